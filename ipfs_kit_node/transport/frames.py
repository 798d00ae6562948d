"""Yamux frames cut out of whatever the secure channel hands over (sans-IO).

py-libp2p's session reads each frame with two exact reads (its 12-byte header, then its
body), each a walk through the secure session's buffer and copies of it; here a decrypted
Noise message (or a TLS read) is fed whole and every complete frame in it comes out at once.
A frame split across reads waits in one buffer; a DATA frame announcing more than
``max_data`` bytes is refused at its header, before any of its body is held.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from ..errors import CodecError

HEADER = struct.Struct("!BBHII")  # version, type, flags, stream id, length
HEADER_SIZE = HEADER.size
TYPE_DATA = 0x0
MAX_DATA = 16 * 1024 * 1024  # the library's limit (its largest window, as go-yamux)


class Frame(NamedTuple):
    """One frame; ``payload`` is a DATA frame's body (empty for the other types, whose
    ``length`` is a value), valid until the reader is fed again."""

    type: int
    flags: int
    stream_id: int
    length: int
    payload: bytes | memoryview


class FrameReader:
    """Frames out of a byte stream fed in pieces of any size."""

    def __init__(self, max_data: int = MAX_DATA) -> None:
        self.max_data = max_data
        self._held = bytearray()  # the start of a frame not yet complete
        self._need = HEADER_SIZE  # bytes that frame has in all, once its header is known

    @property
    def pending(self) -> bool:
        """True while part of a frame is held (its rest is due)."""
        return bool(self._held)

    def _size(self, data: bytes | bytearray | memoryview, at: int) -> int:
        typ: int
        length: int
        _, typ, _, _, length = HEADER.unpack_from(data, at)
        if typ != TYPE_DATA:
            return HEADER_SIZE
        if length > self.max_data:
            raise CodecError(f"yamux DATA frame of {length} bytes (limit {self.max_data})")
        return HEADER_SIZE + length

    @staticmethod
    def _frame(data: bytes | bytearray | memoryview, at: int, end: int,
               view: memoryview) -> Frame:
        _, typ, flags, sid, length = HEADER.unpack_from(data, at)
        payload = view[at + HEADER_SIZE:end] if typ == TYPE_DATA and length else b""
        return Frame(typ, flags, sid, length, payload)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """The frames ``data`` completes, in order; the rest is held for the next feed.
        Raises ``CodecError`` on a DATA frame over the limit (the session must end: the
        byte stream cannot be resynchronised)."""
        frames: list[Frame] = []
        view = memoryview(data)
        pos = 0
        total = len(view)
        held = self._held
        if held:  # finish the frame begun by earlier feeds
            if len(held) < HEADER_SIZE:
                take = min(HEADER_SIZE - len(held), total)
                held += view[:take]
                pos = take
                if len(held) < HEADER_SIZE:
                    return frames
                self._need = self._size(held, 0)
            take = min(self._need - len(held), total - pos)
            held += view[pos:pos + take]
            pos += take
            if len(held) < self._need:
                return frames
            # A new buffer for what comes next: the frame's payload is a view of this one.
            self._held = bytearray()
            frames.append(self._frame(held, 0, len(held), memoryview(held)))
        while total - pos >= HEADER_SIZE:
            end = pos + self._size(view, pos)
            if end > total:
                break
            frames.append(self._frame(view, pos, end, view))
            pos = end
        if pos < total:
            self._held += view[pos:]
            if len(self._held) >= HEADER_SIZE:
                self._need = self._size(self._held, 0)
        return frames
