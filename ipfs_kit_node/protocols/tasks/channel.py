"""The trio side of the task stream: frames out (one writer at a time), frames in."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import trio
from libp2p.abc import INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from .frames import Frame, FrameReader, encode_frame

PROTOCOL = TProtocol("/ipfs-kit/tasks/1.0.0")
READ_SIZE = 64 * 1024


class TaskChannel:
    def __init__(self, stream: INetStream) -> None:
        self.stream = stream
        self.peer: ID = stream.muxed_conn.peer_id
        self._lock = trio.Lock()
        self.closed = False

    async def send(self, *frames: Frame) -> None:
        """Raises when the stream is gone; the caller's session then ends."""
        data = b"".join(encode_frame(f) for f in frames)
        async with self._lock:
            await self.stream.write(data)

    async def frames(self) -> AsyncIterator[Frame]:
        """Checked frames until the peer closes; EnvelopeError on a malformed one."""
        reader = FrameReader()
        while True:
            try:
                data = await self.stream.read(READ_SIZE)
            except Exception:  # EOF or reset
                return
            if not data:
                return
            for message in reader.feed(data):
                yield message

    async def close(self) -> None:
        self.closed = True
        with contextlib.suppress(Exception):
            await self.stream.reset()
