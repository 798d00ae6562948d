"""The worker role: runs the tasks masters assign, on inputs fetched by CID over Bitswap.

Tasks arrive only on the session this worker opened to a master it was configured with
(Noise authenticates the peer ID), never from the topics. Handlers come from the allow-list
(``tasks.handlers``); outputs are stored and pinned here, then the result is sent and kept
until the master acknowledges it, and sent again on the next session if it never did.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass

import trio
from libp2p.peer.id import ID

from ..cid import CidLike
from ..components import Components
from ..errors import IpfsKitError
from ..protocols.tasks import Result, Task
from ..protocols.tasks.frames import Ack, Assign, Cancel, Frame, Hello, Results, batches
from ..swarm import connect
from .base import MeshMember
from .handlers import HandlerError, TaskContext, load_handlers, run_task
from .mesh import forever

ORIGIN_DIAL_TIMEOUT = 5.0
MAX_ERROR = 2000  # characters of a handler's error sent back (the wire allows 8192)


class _Blocks:
    """Handlers read through Bitswap (local first, verified) and write to the store."""

    def __init__(self, c: Components) -> None:
        self.c = c

    async def get(self, cid: CidLike) -> bytes:
        return await self.c.fetch.get(cid)

    def prefetch(self, cids: Iterable[CidLike]) -> None:
        self.c.fetch.prefetch(cids)

    async def put(self, cid: CidLike, data: bytes) -> bool:
        return await self.c.blocks.store.put(cid, data)


@dataclass
class _Running:
    master: ID
    attempt: int
    scope: trio.CancelScope
    dropped: bool = False  # the master cancelled or withdrew the task: nothing to report


class WorkerRole(MeshMember):
    name = "worker"

    def __init__(self, components: Components) -> None:
        super().__init__(components)
        cfg = components.config.tasks
        self.handlers = load_handlers(allow=set(cfg.handlers))
        self.limit = cfg.concurrency
        self.limiter = trio.CapacityLimiter(self.limit)
        self.running: dict[str, _Running] = {}
        self.unacked: dict[str, tuple[ID, Result]] = {}
        self.outbox: dict[ID, list[Result]] = {}
        self._flush = trio.Event()
        self._sending = False  # a result frame is being written (by _report or _sender)
        self.blocks = _Blocks(components)
        self.link.on_open.append(self._resend)

    def capacity(self) -> int:
        return self.limit

    def running_count(self) -> int:
        return len(self.running)

    def hello(self) -> Hello:
        return Hello("worker", self.limit, tuple(sorted(self.handlers)))

    def start_more(self, nursery: trio.Nursery) -> None:
        missing = set(self.c.config.tasks.handlers) - set(self.handlers)
        if missing:
            self.log.warning("allowed handlers that are not installed", handlers=sorted(missing))
        self.log.info("worker handlers", handlers=sorted(self.handlers), concurrency=self.limit)
        nursery.start_soon(forever, self.log, "result sender", self._sender)

    async def on_frame(self, master: ID, frame: Frame) -> None:
        if isinstance(frame, Assign):
            for task in frame.tasks:
                self._accept(master, task)
        elif isinstance(frame, Ack):
            for task_id in frame.ids:
                self.unacked.pop(task_id, None)
        elif isinstance(frame, Cancel):
            for task_id in frame.ids:
                # Forgotten at once: an Assign of the same ID right behind this Cancel (a
                # resubmission after a withdrawal) starts a new run instead of taking over
                # this one, whose "cancelled" would use up the new attempt.
                running = self.running.pop(task_id, None)
                if running is not None:
                    running.dropped = True
                    running.scope.cancel()
        else:
            await super().on_frame(master, frame)

    def _accept(self, master: ID, task: Task) -> None:
        running = self.running.get(task.task_id)
        if running is not None:  # reassigned to us while we run it: report the new attempt
            running.attempt, running.master = task.attempt, master
            return
        done = self.unacked.get(task.task_id)
        if done is not None and done[1].error is None:  # done, the ack was lost: resend
            self._queue(master, Result(task.task_id, self.me, done[1].output, None,
                                       task.attempt))
            return
        # A failure kept is not sent as this new attempt (the master may have counted it
        # already, and a retry would be used up without running): the task runs again.
        self.unacked.pop(task.task_id, None)
        deadline = math.inf
        if task.deadline is not None:
            deadline = trio.current_time() + max(0.0, task.deadline - time.time())
        running = self.running[task.task_id] = _Running(master, task.attempt,
                                                        trio.CancelScope(deadline=deadline))
        self.nursery.start_soon(self._run, task, running)

    async def _run(self, task: Task, running: _Running) -> None:
        log = self.log.bind(task_id=task.task_id, handler=task.handler)
        output: str | None = None
        error: str | None = None
        started = time.monotonic()
        try:
            with running.scope:
                async with self.limiter:
                    await self._dial_origins(task)
                    output = await run_task(self.handlers, TaskContext(self.blocks), task)
                    if output is not None:
                        await self.c.blocks.store.pin(output, recursive=True)
            if running.scope.cancelled_caught:
                error = "deadline exceeded" if running.scope.deadline <= trio.current_time() \
                    else "cancelled"
        except HandlerError as exc:
            error = str(exc)
            log.warning("task refused", error=error)
        except IpfsKitError as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.warning("task failed", error=error)
        except Exception as exc:  # a plugin's bug must not take the worker down
            error = f"handler crashed: {type(exc).__name__}: {exc}"
            log.exception("handler crashed")
        finally:
            if self.running.get(task.task_id) is running:
                del self.running[task.task_id]
        if running.dropped:
            log.debug("task cancelled by the master")
            return
        if error is not None and len(error) > MAX_ERROR:
            error = error[:MAX_ERROR] + "… (cut)"
        if error is None:
            log.debug("task done", output=output,
                      ms=round((time.monotonic() - started) * 1000, 1))
        await self._report(running.master, Result(task.task_id, self.me, output, error,
                                                  running.attempt))

    async def _dial_origins(self, task: Task) -> None:
        """Connect to the peers the submitter said hold the inputs, unless they are here."""
        if not task.inputs or all(self.c.blocks.store.is_local(c) for c in task.inputs):
            return
        connected = {str(p) for p in self.c.host.get_connected_peers()}
        for origin in task.origins:
            peer = origin.rsplit("/p2p/", 1)[-1] if "/p2p/" in origin else None
            if peer is None or peer == self.me or peer in connected:
                continue
            with trio.move_on_after(ORIGIN_DIAL_TIMEOUT):
                try:
                    await connect(self.c.host, self.c.peers, origin, how="routing")
                    connected.add(peer)
                except Exception as exc:
                    self.log.info("origin unreachable", addr=origin, error=str(exc))

    def _queue(self, master: ID, result: Result) -> None:
        self.unacked[result.task_id] = (master, result)
        self.outbox.setdefault(master, []).append(result)
        self._flush.set()

    async def _report(self, master: ID, result: Result) -> None:
        """Send a result: at once when it is the only one (no hop through the sender task
        while a client waits for it), else with the sender's next batch: while other tasks
        run (a burst) results go out together, each frame costing both ends a wake-up."""
        if self._sending or self.outbox or self.running:
            self._queue(master, result)
            return
        self.unacked[result.task_id] = (master, result)
        self._sending = True
        try:
            await self.link.send(master, Results((result,)))
        finally:
            self._sending = False
            if self.outbox:  # queued meanwhile
                self._flush.set()

    async def _sender(self) -> None:
        """Results go out in batches; what is not acknowledged is resent on reconnect."""
        while True:
            await self._flush.wait()
            self._flush = trio.Event()
            if self._sending:  # a direct send is under way: it wakes us when it is done
                continue
            outbox, self.outbox = self.outbox, {}
            self._sending = True
            try:
                for master, results in outbox.items():
                    for batch in batches(results):
                        await self.link.send(master, Results(batch))
            finally:
                self._sending = False

    async def _resend(self, master: ID) -> None:
        mine = [r for m, r in self.unacked.values() if m == master]
        if mine:
            self.log.info("resending unacknowledged results", peer=str(master), count=len(mine))
        for batch in batches(mine):
            await self.link.send(master, Results(batch))
