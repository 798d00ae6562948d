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


def _read_varint(buf: bytearray, pos: int) -> tuple[int, int] | None:
    try:
        return varint_decode(buf, pos, max_bytes=5)
    except VarintTooLong:
        raise FrameError("frame length varint too long") from None


class FrameDecoder:
    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        self._buf += data
        out: list[tuple[int, int, int, int]] = []
        pos = 0
        while True:
            head = _read_varint(self._buf, pos)
            if head is None:
                break
            cid_len, p = head
            if cid_len == 0 or cid_len > MAX_CID_BYTES:
                raise FrameError(f"CID of {cid_len} bytes in the upload (limit {MAX_CID_BYTES})")
            if p + cid_len > len(self._buf):
                break
            size = _read_varint(self._buf, p + cid_len)
            if size is None:
                break
            data_len, q = size
            if data_len > MAX_DATA_BYTES:
                raise FrameError(f"block of {data_len} bytes in the upload "
                                 f"(limit {MAX_DATA_BYTES})")
            if q + data_len > len(self._buf):
                break
            out.append((p, cid_len, q, data_len))
            pos = q + data_len
        with memoryview(self._buf) as view:  # one copy a block (a bytearray slice is two)
            frames = [(bytes(view[p:p + n]), bytes(view[q:q + m])) for p, n, q, m in out]
        del self._buf[:pos]
        return frames

    def close(self) -> None:
        if self._buf:
            raise FrameError(f"the upload ended inside a frame ({len(self._buf)} bytes left)")
