"""The trio side of the task stream: frames out (one writer at a time, each write timed out),
frames in, and ``SendQueue``, which lets the master post to a peer without waiting for it."""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import AsyncIterator

import trio
from libp2p.abc import INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from ...errors import PeerBrokenError
from .frames import Frame, FrameReader, encode_frame

PROTOCOL = TProtocol("/ipfs-kit/tasks/1.0.0")
READ_SIZE = 64 * 1024
# A peer that has not taken a write in this long has stopped reading: its session is closed.
WRITE_TIMEOUT = 10.0
CLOSE_TIMEOUT = 5.0
# What may wait for one peer: a few full frames (FRAME_BUDGET is 1 MiB).
MAX_QUEUED_BYTES = 16 * 1024 * 1024
WRITE_CHUNK = 1024 * 1024
# A peer that reads, but so slowly that what we queued for it has not drained in this long,
# is hoarding work it cannot take in: its session is closed too.
DRAIN_TIMEOUT = 30.0


class TaskChannel:
    def __init__(self, stream: INetStream) -> None:
        self.stream = stream
        self.peer: ID = stream.muxed_conn.peer_id
        self._lock = trio.Lock()
        self.closed = False

    async def send(self, *frames: Frame, timeout: float = WRITE_TIMEOUT) -> None:
        """Raises PeerBrokenError when the stream is gone; the caller's session then ends."""
        await self.write(b"".join(encode_frame(f) for f in frames), timeout)

    async def write(self, data: bytes, timeout: float = WRITE_TIMEOUT) -> None:
        """Write encoded frames within ``timeout`` (waiting for another writer included).

        Raises:
            PeerBrokenError: the peer took too long (it stopped reading) or the stream broke.
                The channel is closed first: a half-written frame leaves it unusable.
        """
        if self.closed:
            raise PeerBrokenError(f"the task session with {self.peer} is closed")
        try:
            with trio.fail_after(timeout):
                async with self._lock:
                    await self.stream.write(data)
        except trio.TooSlowError as exc:
            await self.close()
            raise PeerBrokenError(f"peer {self.peer} did not take {len(data)} bytes in "
                                  f"{timeout:g} s (it stopped reading); session closed") from exc
        except Exception as exc:
            await self.close()
            raise PeerBrokenError(f"the task session with {self.peer} broke: {exc}") from exc

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
        with trio.move_on_after(CLOSE_TIMEOUT), contextlib.suppress(Exception):
            await self.stream.reset()


class SendQueue:
    """Frames for one peer, written by that peer's own task (``run``).

    ``post`` never waits: it queues the encoded frames, or refuses them when more than
    ``max_bytes`` are already waiting (the peer is not reading). So a loop that serves many
    peers (the master's dispatcher) is never held up by one of them.
    """

    def __init__(self, channel: TaskChannel, *, max_bytes: int = MAX_QUEUED_BYTES,
                 timeout: float = WRITE_TIMEOUT, drain_timeout: float = DRAIN_TIMEOUT) -> None:
        self.channel = channel
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.drain_timeout = drain_timeout
        self.queued = 0  # bytes waiting, the write in progress included
        self.backlog_since: float | None = None  # when the queue last stopped being empty
        self._parts: deque[bytes] = deque()
        self._wake = trio.Event()

    def _stalled(self) -> bool:
        since = self.backlog_since
        return since is not None and trio.current_time() - since > self.drain_timeout

    def post(self, *frames: Frame) -> bool:
        """Queue the frames; False (nothing queued) if the channel is closed or the queue
        would exceed its bound."""
        if self.channel.closed:
            return False
        data = b"".join(encode_frame(f) for f in frames)
        if self.queued + len(data) > self.max_bytes or self._stalled():
            return False
        if self.queued == 0:
            self.backlog_since = trio.current_time()
        self._parts.append(data)
        self.queued += len(data)
        self._wake.set()
        return True

    async def run(self) -> None:
        """Write what is posted, in order, until cancelled.

        Raises:
            PeerBrokenError: a write timed out or failed (the channel is closed then).
        """
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            while self._parts:
                chunk = [self._parts.popleft()]
                size = len(chunk[0])
                while self._parts and size + len(self._parts[0]) <= WRITE_CHUNK:
                    size += len(self._parts[0])
                    chunk.append(self._parts.popleft())
                if self._stalled():
                    await self.channel.close()
                    raise PeerBrokenError(
                        f"peer {self.channel.peer} left {self.queued} bytes unread for over "
                        f"{self.drain_timeout:g} s (it reads too slowly); session closed")
                await self.channel.write(b"".join(chunk), self.timeout)
                self.queued -= size
                if self.queued == 0:
                    self.backlog_since = None
