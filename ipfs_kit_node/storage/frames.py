"""The block upload stream of ``block/put-many``: frames of (CID, bytes), each part prefixed by
its length as an unsigned varint. Sans-IO: feed bytes in, get whole frames out.
"""

from __future__ import annotations

from ..codecs.putmany import MAX_CID_BYTES, MAX_DATA_BYTES, encode_frame, encode_frame_head
from ..codecs.varint import VarintTooLong
from ..codecs.varint import decode as varint_decode
from ..errors import StoreError

__all__ = ["MAX_CID_BYTES", "MAX_DATA_BYTES", "FrameDecoder", "FrameError", "encode_frame",
           "encode_frame_head"]


class FrameError(StoreError, ValueError):
    """The upload stream is malformed or a frame is over its limit."""


def _read_varint(buf: bytes | bytearray, pos: int) -> tuple[int, int] | None:
    try:
        return varint_decode(buf, pos, max_bytes=5)
    except VarintTooLong:
        raise FrameError("frame length varint too long") from None


def _head(buf: bytes | bytearray, pos: int) -> tuple[int, int, int, int] | None:
    """(CID offset, CID length, data offset, data length) of the frame at ``pos``, or None
    when its header is not all there yet; FrameError when a length is over its limit."""
    head = _read_varint(buf, pos)
    if head is None:
        return None
    cid_len, p = head
    if cid_len == 0 or cid_len > MAX_CID_BYTES:
        raise FrameError(f"CID of {cid_len} bytes in the upload (limit {MAX_CID_BYTES})")
    if p + cid_len > len(buf):
        return None
    size = _read_varint(buf, p + cid_len)
    if size is None:
        return None
    data_len, q = size
    if data_len > MAX_DATA_BYTES:
        raise FrameError(f"block of {data_len} bytes in the upload (limit {MAX_DATA_BYTES})")
    return p, cid_len, q, data_len


class FrameDecoder:
    """Frames out of the chunks of an upload. A frame inside one chunk is sliced out of it
    (one copy); only a frame cut by a chunk's end is held, and joined once complete: buffering
    every chunk cost a 64 MiB add two more copies of its bytes and a memmove per chunk."""

    def __init__(self) -> None:
        self._buf = bytearray()  # the start of a frame the last chunk cut

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        frames: list[tuple[bytes, bytes]] = []
        pos = 0
        if self._buf:
            head = _head(self._buf, 0)
            if head is None:  # its header is cut too (rare): the whole chunk behind it
                self._buf += data
                data, self._buf = bytes(self._buf), bytearray()
            else:
                cid_at, cid_len, data_at, data_len = head
                pos = data_at + data_len - len(self._buf)  # its bytes in this chunk
                if pos > len(data):
                    self._buf += data
                    return frames
                if data_at == len(self._buf) and pos == len(data) and type(data) is bytes:
                    # the frame's bytes are this whole chunk (an uploader sends a big block's
                    # bytes as a chunk of their own): kept as they are, not copied
                    frames.append((bytes(self._buf[cid_at:cid_at + cid_len]), data))
                    self._buf = bytearray()
                    return frames
                with memoryview(self._buf) as held, memoryview(data) as view:
                    frames.append((bytes(held[cid_at:cid_at + cid_len]),
                                   b"".join((held[data_at:], view[:pos]))))
                self._buf = bytearray()
        end = len(data)
        while (head := _head(data, pos)) is not None:
            cid_at, cid_len, data_at, data_len = head
            if data_at + data_len > end:
                break
            frames.append((data[cid_at:cid_at + cid_len], data[data_at:data_at + data_len]))
            pos = data_at + data_len
        if pos < end:
            self._buf += memoryview(data)[pos:]
        return frames

    def close(self) -> None:
        if self._buf:
            raise FrameError(f"the upload ended inside a frame ({len(self._buf)} bytes left)")
