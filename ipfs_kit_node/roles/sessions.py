"""The task streams workers and submitters open to the master: one session per peer.

No loop of the master ever waits for one peer: frames to a peer go through that session's
``SendQueue``, written by the session's own task with a timeout. A peer that stops reading
fills its queue or times a write out; its session is closed and (through ``on_lost``) its
tasks are requeued. A peer that opens a new stream replaces its old session.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
import trio
from libp2p.abc import INetStream

from ..errors import PeerBrokenError
from ..protocols.tasks import EnvelopeError
from ..protocols.tasks.channel import SendQueue, TaskChannel

#: Handles one frame from a peer; True when the frame made the peer a worker.
OnFrame = Callable[[str, Any], Awaitable[bool]]


@dataclass
class Session:
    """One peer's task stream: frames in (its handler), frames out (its queue's own task)."""

    channel: TaskChannel
    queue: SendQueue
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    worker: bool = False  # its hello made it a worker

    def close(self) -> None:
        """End the session from anywhere without waiting: its handler cleans up."""
        self.channel.closed = True  # nothing more is queued for it
        self.scope.cancel()


class Sessions:
    """``handle_stream`` serves one peer's stream (the protocol handler); ``post`` queues
    frames for a peer without waiting. ``on_lost(peer)`` runs when a worker's session ends."""

    def __init__(self, log: structlog.stdlib.BoundLogger, on_frame: OnFrame,
                 on_lost: Callable[[str], Awaitable[None]]) -> None:
        self.log = log
        self.on_frame = on_frame
        self.on_lost = on_lost
        self.by_peer: dict[str, Session] = {}

    def get(self, peer: str) -> Session | None:
        return self.by_peer.get(peer)

    def post(self, peer: str, *frames: Any) -> bool:
        """Queue frames for a peer without waiting for it; False when it has no session or
        has stopped reading (its queue is full: the session is closed, its tasks requeued)."""
        session = self.by_peer.get(peer)
        if session is None:
            return False
        if session.queue.post(*frames):
            return True
        if not session.channel.closed:
            self.log.warning("task session closed: the peer is not reading (send queue full)",
                             peer=peer, queued=session.queue.queued)
            session.close()
        return False

    async def handle_stream(self, stream: INetStream) -> None:
        channel = TaskChannel(stream)
        peer = str(channel.peer)
        session = Session(channel, SendQueue(channel))
        previous = self.by_peer.get(peer)
        self.by_peer[peer] = session
        if previous is not None:
            previous.close()
        try:
            with session.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._write, peer, session)
                    try:
                        await self._read(peer, session)
                    finally:
                        nursery.cancel_scope.cancel()
        finally:
            if self.by_peer.get(peer) is session:
                del self.by_peer[peer]
                if session.worker:
                    try:
                        await self.on_lost(peer)
                    except Exception as exc:
                        self.log.warning("lost worker's tasks not requeued", peer=peer,
                                         error=str(exc))
            await channel.close()

    async def _write(self, peer: str, session: Session) -> None:
        try:
            await session.queue.run()
        except PeerBrokenError as exc:
            self.log.warning("task session closed: write failed", peer=peer, error=str(exc))
            session.close()

    async def _read(self, peer: str, session: Session) -> None:
        try:
            async for frame in session.channel.frames():
                if await self.on_frame(peer, frame):
                    session.worker = True
        except EnvelopeError as exc:
            self.log.warning("malformed task frame; session closed", peer=peer, error=str(exc))
        except Exception as exc:  # the edge of the session: it ends, the node does not
            self.log.warning("task session failed; closed", peer=peer, error=str(exc),
                             kind=type(exc).__name__)
