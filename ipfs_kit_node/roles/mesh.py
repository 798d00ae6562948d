"""What every role shares on the task mesh: topic names, heartbeats, the status board, and the
session a worker or submitter keeps to each master (``MasterLink``).

The topics are the shared, best-effort channel anyone in the cluster can watch::

    /ipfs-kit/<cluster>/tasks    the master announces accepted tasks (TaskBatch);
                                 listed submitters may submit there too
    /ipfs-kit/<cluster>/results  the master publishes each task's one final outcome (ResultBatch)
    /ipfs-kit/<cluster>/status   every node's heartbeat (Status)

Everything that must arrive (submissions, assignments, results, acks) also travels on the
direct stream (``protocols/tasks/frames.py``), because gossipsub drops the tail of a burst.
"""

from __future__ import annotations

import shutil
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import multiaddr
import structlog
import trio
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo

from ..components import Components
from ..errors import IpfsKitError
from ..host import origin_addresses
from ..logs import get_logger
from ..protocols.pubsub import PubsubMessage
from ..protocols.tasks import EnvelopeError, Status, Task, decode, encode
from ..protocols.tasks.channel import PROTOCOL, TaskChannel
from ..protocols.tasks.frames import Frame, Hello, StatusFrame, TaskInfo

log = get_logger(__name__)

RECONNECT_DELAY = 0.5
MAX_RECONNECT_DELAY = 5.0
DIAL_TIMEOUT = 5.0
LOOP_BACKOFF = 0.5
MAX_LOOP_BACKOFF = 5.0
# The status board forgets a node silent this long, and never holds more than MAX_BOARD.
BOARD_FORGET_AFTER = 3600.0
MAX_BOARD = 10_000


class TaskError(IpfsKitError, ValueError):
    """A task request that cannot be served (malformed, refused, no master reachable)."""


class UnknownTaskError(TaskError):
    http_status = 404


class NoMasterError(TaskError):
    http_status = 503

    def __init__(self, masters: tuple[str, ...]) -> None:
        hint = ("no master is configured: set [node] masters = [\"<peer ID>\"] and bootstrap "
                "to it") if not masters else (
            f"no session to any master ({', '.join(masters)}): check that one runs and that "
            "this node can reach it (bootstrap, mDNS or DHT)")
        super().__init__(hint)


@dataclass(frozen=True)
class Topics:
    tasks: str
    results: str
    status: str

    @classmethod
    def of(cls, cluster: str) -> Topics:
        base = f"/ipfs-kit/{cluster}"
        return cls(f"{base}/tasks", f"{base}/results", f"{base}/status")


def new_task_id() -> str:
    return uuid.uuid4().hex


async def forever(log: structlog.stdlib.BoundLogger, name: str,
                  loop: Callable[[], Awaitable[None]]) -> None:
    """The edge guard of a role loop: nothing it raises stops the node.

    An exception is logged with the loop's name and the loop starts again after a short
    backoff (doubling to ``MAX_LOOP_BACKOFF`` while it keeps failing); so does a loop that
    returned (its subscription ended). Cancellation (the node stopping) passes through.
    """
    delay = LOOP_BACKOFF
    while True:
        started = trio.current_time()
        try:
            await loop()
            log.warning("role loop ended; restarted", loop=name)
        except Exception as exc:
            log.error("role loop failed; restarted", loop=name,
                      error=f"{type(exc).__name__}: {exc}", exc_info=True)
        if trio.current_time() - started > 10 * MAX_LOOP_BACKOFF:
            delay = LOOP_BACKOFF  # it ran a good while: a new failure, not the same one
        await trio.sleep(delay)
        delay = min(delay * 2, MAX_LOOP_BACKOFF)


class TaskBackend(Protocol):
    """What the task routes need from a role: a master answers itself, others forward."""

    async def submit(self, tasks: list[Task], *, waiting: bool = False
                     ) -> tuple[list[str], list[tuple[str, str]]]:
        """Accepted task IDs and refusals. ``waiting``: the caller waits for the outcomes
        next (the acknowledgement may then come a little later, with them)."""
        ...

    async def info(self, task_id: str) -> TaskInfo: ...

    def list_tasks(self, state: str | None) -> list[TaskInfo]: ...

    def stats(self) -> dict[str, int]: ...

    async def wait(self, task_id: str, timeout: float) -> TaskInfo: ...

    async def cancel(self, task_id: str) -> TaskInfo: ...

    def workers(self) -> list[dict[str, Any]]: ...

    def cluster_state(self) -> dict[str, Any]: ...


def sample_status(peer: str, role: str, capacity: int, running: int, path: str) -> Status:
    """This machine's load now (psutil), for a heartbeat."""
    import psutil  # imported on first heartbeat; it is not needed to start

    try:
        disk_free = shutil.disk_usage(path).free
    except OSError:
        disk_free = 0
    return Status(peer=peer, role=role, capacity=capacity, running=running,
                  cpu=float(psutil.cpu_percent(interval=None)),
                  memory=float(psutil.virtual_memory().percent),
                  disk_free=disk_free, sent_at=time.time())


class StatusBoard:
    """The latest heartbeat of every node seen on the status topic (signer-checked).

    Anyone can publish there, so the board is bounded: a node silent for ``forget_after`` is
    dropped, and past ``limit`` entries the longest silent goes first.
    """

    def __init__(self, forget_after: float = BOARD_FORGET_AFTER, limit: int = MAX_BOARD
                 ) -> None:
        self.forget_after = forget_after
        self.limit = limit
        self.seen: dict[str, tuple[Status, float]] = {}  # oldest note first

    def note(self, status: Status, now: float) -> None:
        self.seen.pop(status.peer, None)  # re-inserted last: the dict stays in note order
        self.seen[status.peer] = (status, now)
        while self.seen:
            peer, (_, at) = next(iter(self.seen.items()))
            if len(self.seen) <= self.limit and now - at <= self.forget_after:
                break
            del self.seen[peer]

    def workers(self, now: float, stale_after: float) -> list[dict[str, Any]]:
        return [{"peer": s.peer, "capacity": s.capacity, "running": s.running, "cpu": s.cpu,
                 "memory": s.memory, "disk_free": s.disk_free,
                 "last_seen": round(now - at, 3), "alive": now - at <= stale_after}
                for s, at in sorted(self.seen.values(), key=lambda v: v[0].peer)
                if s.role == "worker"]


def decode_quietly(message: PubsubMessage) -> Any:
    """The message's body, or None with a clear log line (the node keeps running)."""
    try:
        return decode(message.data)
    except EnvelopeError as exc:
        log.warning("malformed task-mesh message ignored", topic=message.topic,
                    peer=str(message.sender), error=str(exc))
        return None


class Heartbeats:
    """Publishes this node's Status on the status topic, and keeps the board of others'."""

    def __init__(self, c: Components, topics: Topics, capacity: Callable[[], int],
                 running: Callable[[], int]) -> None:
        self.c = c
        self.topics = topics
        self.capacity = capacity
        self.running = running
        self.board = StatusBoard()
        self.listeners: list[Callable[[Status, float], None]] = []

    def current(self) -> Status:
        return sample_status(str(self.c.host.get_id()), self.c.config.role, self.capacity(),
                             self.running(), str(self.c.repo.path))

    async def publish_forever(self, also: Callable[[Status], Awaitable[None]] | None = None
                              ) -> None:
        while True:
            status = self.current()
            try:
                await self.c.pubsub.publish(self.topics.status, encode(status))
            except Exception as exc:
                log.info("heartbeat not published", error=str(exc))
            if also is not None:
                await also(status)
            await trio.sleep(self.c.config.tasks.heartbeat)

    async def watch_forever(self) -> None:
        async for message in self.c.pubsub.subscribe(self.topics.status):
            body = decode_quietly(message)
            if not isinstance(body, Status):
                continue
            if body.peer != str(message.sender):
                log.warning("status heartbeat signed by another peer ignored",
                            claimed=body.peer, peer=str(message.sender))
                continue
            now = time.time()
            self.board.note(body, now)
            for listener in self.listeners:
                listener(body, now)


FrameHandler = Callable[[ID, Frame], Awaitable[None]]


class MasterLink:
    """One session per configured master, reopened when it drops.

    ``hello`` is sent first on every new session; ``on_open`` callbacks then run (a worker
    resends unacknowledged results, a submitter asks after its unfinished tasks).
    """

    def __init__(self, c: Components, hello: Callable[[], Hello], on_frame: FrameHandler) -> None:
        self.c = c
        self.hello = hello
        self.on_frame = on_frame
        self.masters = [ID.from_base58(m) for m in c.config.node.masters]
        self.sessions: dict[ID, TaskChannel] = {}
        self.on_open: list[Callable[[ID], Awaitable[None]]] = []
        self._nudges = {m: trio.Event() for m in self.masters}

    def nudge(self, master: ID) -> None:
        """A master announced work: retry its session now rather than after the delay."""
        event = self._nudges.get(master)
        if event is not None:
            event.set()

    def primary(self) -> TaskChannel:
        for master in self.masters:
            channel = self.sessions.get(master)
            if channel is not None and not channel.closed:
                return channel
        raise NoMasterError(self.c.config.node.masters)

    async def send(self, master: ID, *frames: Frame) -> bool:
        channel = self.sessions.get(master)
        if channel is None or channel.closed:
            return False
        try:
            await channel.send(*frames)
            return True
        except Exception as exc:
            log.info("task session write failed", peer=str(master), error=str(exc))
            await channel.close()
            return False

    async def run(self) -> None:
        if not self.masters:
            log.warning("no masters configured ([node] masters): this node takes and "
                        "forwards no tasks")
            await trio.sleep_forever()
        async with trio.open_nursery() as nursery:
            for master in self.masters:
                nursery.start_soon(self._keep, master)

    async def _keep(self, master: ID) -> None:
        delay = RECONNECT_DELAY
        while True:
            if master in self.c.host.get_connected_peers() or await self._redial(master):
                delay = RECONNECT_DELAY
                try:
                    await self._session(master)
                except Exception as exc:
                    log.info("task session ended", peer=str(master), error=str(exc))
            else:
                delay = min(delay * 2, MAX_RECONNECT_DELAY)
            self._nudges[master] = trio.Event()
            with trio.move_on_after(delay):
                await self._nudges[master].wait()

    async def _redial(self, master: ID) -> bool:
        """A master we lost (it restarted): dial its known or bootstrap addresses again."""
        try:
            known = {str(a) for a in self.c.host.get_peerstore().addrs(master)}
        except Exception:  # never seen, or its record expired
            known = set()
        suffix = f"/p2p/{master}"
        known |= {a[:-len(suffix)] for a in self.c.config.node.bootstrap if a.endswith(suffix)}
        if not known:
            return False
        info = PeerInfo(master, [multiaddr.Multiaddr(a) for a in sorted(known)])
        with trio.move_on_after(DIAL_TIMEOUT):
            try:
                await self.c.host.connect(info)
                return True
            except Exception as exc:
                log.debug("master not reachable yet", peer=str(master), error=str(exc))
        return False

    async def _session(self, master: ID) -> None:
        with trio.fail_after(DIAL_TIMEOUT):  # TooSlowError: _keep retries after its delay
            stream = await self.c.host.new_stream(master, [PROTOCOL])
        channel = TaskChannel(stream)
        try:
            await channel.send(self.hello())
            self.sessions[master] = channel
            log.info("task session open", peer=str(master))
            for callback in self.on_open:
                await callback(master)
            async for frame in channel.frames():
                await self.on_frame(master, frame)
        except EnvelopeError as exc:
            log.warning("master sent a malformed task frame; session closed",
                        peer=str(master), error=str(exc))
        finally:
            if self.sessions.get(master) is channel:
                del self.sessions[master]
            await channel.close()
            log.info("task session closed", peer=str(master))

    async def send_status(self, status: Status) -> None:
        for master in list(self.sessions):
            await self.send(master, StatusFrame(status))


ORIGINS_TTL = 5.0  # seconds our address list is reused before it is read again
_origins: weakref.WeakKeyDictionary[Any, tuple[float, tuple[str, ...]]] = \
    weakref.WeakKeyDictionary()


def own_origins(c: Components) -> tuple[str, ...]:
    """Where peers can fetch what we hold: our addresses (Cluster calls these origins).

    Cached for a few seconds: every submission asks, and py-libp2p rebuilds and prints each
    multiaddr on every call (a fifth of the master's CPU at 100 submissions/s)."""
    now = time.monotonic()
    cached = _origins.get(c.host)
    if cached is not None and cached[0] > now:
        return cached[1]
    origins = tuple(origin_addresses(c.host))[:8]
    _origins[c.host] = (now + ORIGINS_TTL, origins)
    return origins
