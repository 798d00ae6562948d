"""Length-prefixed frames (unsigned varint length, then the body), as libp2p protocols use them.

Sans-IO: feed bytes in, whole bodies out. A runaway or oversized length raises the caller's
error type, so each protocol reports it as its own violation.
"""

from __future__ import annotations

from collections.abc import Callable

from .varint import VarintTooLong
from .varint import decode as varint_decode
from .varint import encode as varint


def frame(body: bytes) -> bytes:
    return varint(len(body)) + body


class LengthPrefixedDecoder:
    def __init__(self, max_bytes: int, error: Callable[[str], Exception]) -> None:
        self.max_bytes = max_bytes
        self._error = error
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        out = []
        pos = 0
        while True:
            length, start = self._length(pos)
            if length is None:
                break
            if length > self.max_bytes:
                raise self._error(f"message of {length} bytes (limit {self.max_bytes})")
            if start + length > len(self._buf):
                break
            out.append(bytes(self._buf[start:start + length]))
            pos = start + length
        del self._buf[:pos]
        return out

    def _length(self, pos: int) -> tuple[int | None, int]:
        try:
            decoded = varint_decode(self._buf, pos, max_bytes=4)  # 4 bytes: up to 256 MiB
        except VarintTooLong:
            raise self._error("message length varint is longer than 4 bytes") from None
        return decoded if decoded is not None else (None, pos)

    @property
    def buffered(self) -> int:
        return len(self._buf)
