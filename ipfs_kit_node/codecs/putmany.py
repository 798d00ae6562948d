"""The block upload stream of ``block/put-many``, the encoding side: frames of (CID, bytes),
each part prefixed by its length as an unsigned varint. Kept apart from the decoder
(storage/frames.py) so the CLI and the client encode without importing the store (its
import pulled trio, SQLite and multiformats into every ``add``: ~0.1 s CPU a command).
"""

from __future__ import annotations

from .varint import encode as varint

MAX_CID_BYTES = 256
MAX_DATA_BYTES = 4 * 1024 * 1024


def encode_frame(cid: bytes, data: bytes) -> bytes:
    return varint(len(cid)) + cid + varint(len(data)) + data


def encode_frame_head(cid: bytes, size: int) -> bytes:
    """A frame without its data (sent after it as is): ``encode_frame`` minus the copy."""
    return varint(len(cid)) + cid + varint(size)
