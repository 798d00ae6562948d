"""The master role: accepts tasks, schedules them on workers, and reports one outcome per task.

Decisions come from the sans-IO ``Scheduler``; this module wires the I/O around it and
handles the frames peers send. Each other job has its module:

- ``committer``: the journal, group-committed (every accepted task is fsynced before it is
  acknowledged, every outcome before it is delivered);
- ``outcomes``: journal-then-deliver of final outcomes, held back while the journal refuses
  them (a full disk refuses new tasks with ``DiskFullError``);
- ``sessions``: the peers' task streams (no loop here ever waits for one peer);
- ``gossip``: the task topics; ``snapshots``: the Arrow snapshot of the cluster state;
  ``pinner``: pinning result CIDs.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import trio

from ..components import Components
from ..errors import DiskFullError
from ..logs import get_logger
from ..protocols.guard import set_guarded_handler
from ..protocols.tasks import Result, Status, Task
from ..protocols.tasks.channel import PROTOCOL
from ..protocols.tasks.frames import (
    MAX_BATCH,
    Accepted,
    Ack,
    Assign,
    Cancel,
    Hello,
    Query,
    Results,
    States,
    StatusFrame,
    Submit,
    TaskInfo,
    batches,
)
from ..service import TaskStatus
from .committer import JournalCommitter, JournalError
from .gossip import TaskGossip
from .journal import TaskJournal, submit_record
from .mesh import Heartbeats, TaskBackend, TaskError, Topics, UnknownTaskError, forever
from .outcomes import Outcomes
from .pinner import PIN_CONCURRENCY, ResultPinner
from .scheduler import Record, Scheduler, State
from .sessions import Sessions
from .snapshots import StateSnapshots
from .state import cluster_state

log = get_logger(__name__)

TICK = 0.5
FORGET_WORKERS_AFTER = 3600.0
# Acknowledgements of results wait this long to go out together (or ride on the worker's next
# assignment): an ack only lets the worker forget a result, and each write to a worker wakes
# its process, which on a busy machine takes the CPU from the answer a client waits for.
ACK_DELAY = 0.05
# A submission whose caller waits for the outcomes too (``task/submit?wait=true``) lingers
# this long before it is journaled alone: a task done sooner has its submission journaled
# with its outcome, one fsync instead of two (the caller hears of neither before both).
SUBMIT_LINGER = 0.1


class MasterRole:
    name = "master"

    def __init__(self, components: Components) -> None:
        c = self.c = components
        cfg = c.config.tasks
        self.me = str(c.host.get_id())
        self.log = log.bind(role="master")
        self.topics = Topics.of(c.config.node.cluster)
        self.scheduler = Scheduler(lease=cfg.lease, retries=cfg.retries,
                                   heartbeat_timeout=cfg.heartbeat_timeout,
                                   allowed=frozenset(cfg.workers))
        self.journal = TaskJournal(Path(c.repo.path) / "tasks" / "journal",
                                   sync=c.config.storage.sync)
        self.submitters = set(cfg.submitters)
        self.committer = JournalCommitter(self.journal, self.scheduler.forget_finished,
                                          self.log)
        self.sessions = Sessions(self.log, self._on_frame, self._lost)
        self.gossip = TaskGossip(c, self.topics, self.me, self.submitters, self.submit,
                                 self.log)
        self.pinner = ResultPinner(c, self.log)
        self.outcomes = Outcomes(self.committer, self.sessions.post, self.gossip,
                                 self.pinner.offer if cfg.pin_results else None, self.log,
                                 current=self._current)
        self.snapshots = StateSnapshots(self.me, self.scheduler, Path(c.repo.path) / "tasks",
                                        cfg.snapshot_period, self.log)
        self.heartbeats = Heartbeats(c, self.topics, lambda: 0, lambda: 0)
        self.heartbeats.listeners.append(self._gossip_heartbeat)
        self._wake = trio.Event()
        self._refused: set[str] = set()  # workers whose send queue refused an Assign
        # Tasks scheduled whose submission is being journaled: the event is set once it is.
        self._unaccepted: dict[str, trio.Event] = {}
        self._acks: dict[str, list[str]] = {}  # worker -> result IDs to acknowledge
        self._ack_wake = trio.Event()
        self.tasks: TaskBackend = self  # the task routes answer from this scheduler

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        records = await trio.to_thread.run_sync(self.journal.open)
        for record in records:
            self.scheduler.restore(record)
        self.log.info("task journal replayed", tasks=len(records),
                      open=self.scheduler.open_tasks())
        try:
            async with trio.open_nursery() as nursery:
                for name, loop in [
                    ("committer", self.committer.run), ("dispatcher", self._dispatcher),
                    ("acknowledger", self._acknowledger),
                    ("ticker", self._ticker), ("topic publisher", self.gossip.publish_forever),
                    ("tasks topic", self.gossip.watch_submissions),
                    ("status topic", self.heartbeats.watch_forever),
                    ("heartbeat", self.heartbeats.publish_forever),
                    ("snapshots", self.snapshots.run),
                    *[("pinner", self.pinner.run)] * PIN_CONCURRENCY,
                ]:
                    nursery.start_soon(forever, self.log, name, loop)
                set_guarded_handler(self.c.host, PROTOCOL, self.sessions.handle_stream)
                self.log.info("master ready", cluster=self.c.config.node.cluster,
                              submitters=len(self.submitters))
                task_status.started()
        finally:
            self.journal.close()

    # -- the backend (control socket and remote submitters) ----------------------------------

    async def submit(self, tasks: list[Task], origin: str = "local", *, waiting: bool = False
                     ) -> tuple[list[str], list[tuple[str, str]]]:
        """Accept tasks: each is acknowledged (returned) once its submission is fsynced.

        New tasks are scheduled while their submission is being journaled, so the fsync
        overlaps the worker's run instead of preceding it. Until it is durable such a task
        is shown to nobody (queries answer "no task"), and its outcome is journaled after it
        (see ``_finish``); if the journal refuses it, it is withdrawn (its worker told to
        cancel) and the error rises: nothing was acknowledged, nothing is kept.

        ``waiting``: the caller waits for the outcomes next, so the acknowledgement may come
        with them: the submission lingers (``SUBMIT_LINGER``) to be fsynced with them.
        """
        now = time.time()
        fresh: list[Task] = []
        ids: list[str] = []
        refused: list[tuple[str, str]] = []
        seen: set[str] = set()
        offered = self.scheduler.handlers_offered()
        for task in tasks:
            if offered is not None and task.handler not in offered:
                refused.append((task.task_id, f"no worker allows handler {task.handler!r} "
                                              f"(allowed: {', '.join(sorted(offered))})"))
                continue
            ids.append(task.task_id)
            if task.task_id not in self.scheduler.tasks and task.task_id not in seen:
                seen.add(task.task_id)
                fresh.append(task)
        # Tasks another call is still journaling: acknowledged once that call's are.
        earlier = {self._unaccepted[i] for i in ids if i in self._unaccepted}
        records = [self.scheduler.submit(t, origin, now)[0] for t in fresh]
        docs = [submit_record(r) for r in records]
        journaled = trio.Event()
        for record in records:
            self._unaccepted[record.task.task_id] = journaled
        if records:
            self._assign()  # they run while the journal is written
        try:
            # Shielded: a caller that leaves (HTTP client gone, session replaced) must not
            # end this before the write does, or a resubmission would be acknowledged while
            # the journal may never hold the task. Bounded: the committer settles every
            # commit, failing those still queued when it stops.
            with trio.CancelScope(shield=True):
                await self.committer.durable(docs, SUBMIT_LINGER if waiting else 0.0)
        except (DiskFullError, JournalError):
            self._withdraw(records)
            raise
        finally:
            for record in records:
                self._unaccepted.pop(record.task.task_id, None)
            journaled.set()
        for event in earlier:
            await event.wait()
        lost = [i for i in ids if i not in self.scheduler.tasks]  # that call's write failed
        if lost:
            ids = [i for i in ids if i in self.scheduler.tasks]
            refused += [(i, "its first submission could not be journaled; submit it again")
                        for i in lost]
        if records:
            self.gossip.announce(fresh)
            self.log.debug("tasks accepted", count=len(records), origin=origin)
        if refused:
            self.log.warning("tasks refused", count=len(refused), reason=refused[0][1])
        return ids, refused

    def _withdraw(self, records: list[Record]) -> None:
        """Submissions the journal refused: forgotten, their workers told to cancel them."""
        for record in records:
            if self.scheduler.withdraw(record.task.task_id) is not None \
                    and record.worker is not None and not record.final:
                self.sessions.post(record.worker, Cancel((record.task.task_id,)))

    async def _finish(self, records: list[Record]) -> bool:
        """``outcomes.finish``. An outcome is never journaled before its task: the committer
        writes in order, and a task's submission was queued before it could finish (a
        submission still lingering goes out in the same fsync). A task withdrawn meanwhile
        (the journal refused its submission) is not delivered (``Outcomes.current``)."""
        return await self.outcomes.finish(records)

    def _current(self, record: Record) -> bool:
        """Whether the record is still the scheduler's (not withdrawn, nor resubmitted)."""
        return self.scheduler.tasks.get(record.task.task_id) is record

    def _record(self, task_id: str) -> Record:
        record = self.scheduler.tasks.get(task_id)
        if record is None or task_id in self._unaccepted:
            raise UnknownTaskError(f"no task {task_id} on this master")
        return record

    async def info(self, task_id: str) -> TaskInfo:
        return self.outcomes.shown(self._record(task_id))

    def _accepted(self) -> Iterator[Record]:
        unaccepted = self._unaccepted
        records = self.scheduler.tasks.values()
        return iter(records) if not unaccepted else \
            (r for r in records if r.task.task_id not in unaccepted)

    def list_tasks(self, state: str | None) -> list[TaskInfo]:
        infos = map(self.outcomes.shown, self._accepted())
        return [i for i in infos if state is None or i.state == state]

    def stats(self) -> dict[str, int]:
        """Tasks per state as ``list_tasks`` shows them: counted from the records' states,
        then corrected for the few not durable yet (clients poll this during a burst)."""
        counts = Counter(r.state for r in self.scheduler.tasks.values())
        for task_id in self.outcomes.undurable | self._unaccepted.keys():
            record = self.scheduler.tasks.get(task_id)
            if record is None:
                continue
            counts[record.state] -= 1
            if task_id not in self._unaccepted:
                counts[State(self.outcomes.shown(record).state)] += 1
        return {state.value: n for state, n in counts.items() if n > 0}

    async def wait(self, task_id: str, timeout: float) -> TaskInfo:
        return await self.outcomes.wait(self._record(task_id), timeout)

    async def cancel(self, task_id: str) -> TaskInfo:
        self._record(task_id)
        await self._cancel(task_id)
        return self.outcomes.shown(self.scheduler.tasks[task_id])

    async def _cancel(self, task_id: str) -> None:
        record, worker = self.scheduler.cancel(task_id, time.time())
        if record is None:
            return
        if worker is not None:
            self.sessions.post(worker, Cancel((task_id,)))
        await self._finish([record])

    def workers(self) -> list[dict[str, Any]]:
        now = time.time()
        return [{"peer": w.peer, "capacity": w.capacity, "running": len(w.running),
                 "done": w.done, "cpu": w.cpu, "memory": w.memory, "disk_free": w.disk_free,
                 "connected": w.connected, "last_seen": round(now - w.last_seen, 3),
                 "alive": w.connected and now - w.last_seen <= self.scheduler.heartbeat_timeout,
                 "handlers": sorted(w.handlers)}
                for w in sorted(self.scheduler.workers.values(), key=lambda w: w.peer)]

    def cluster_state(self) -> dict[str, Any]:
        return cluster_state(self.me, self.scheduler.workers.values(),
                             self.scheduler.tasks.values(), time.time())

    # -- scheduling --------------------------------------------------------------------------

    def _assign(self) -> None:
        """Assign what can be, now: assignments are posted to each worker's queue, so this
        never waits for a peer. Submissions and results call it directly (a hop through the
        dispatcher task cost each task a turn of the event loop); a worker whose queue
        refused its batch is left to the dispatcher, which requeues its tasks."""
        for worker, tasks in self.scheduler.assign(time.time()).items():
            for batch in batches(tasks):
                if not self.sessions.post(worker, *self._take_acks(worker), Assign(batch)):
                    self._refused.add(worker)
                    self._wake.set()
                    break

    async def _dispatcher(self) -> None:
        """Requeues the tasks of workers that refused assignments, and assigns what the
        ticker, lost workers or requeues freed."""
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            refused, self._refused = self._refused, set()
            for worker in refused:
                await self._lost(worker)
            self._assign()

    def _ack(self, worker: str, ids: Iterable[str]) -> None:
        """Acknowledge results to a worker soon (see ``ACK_DELAY``)."""
        self._acks.setdefault(worker, []).extend(ids)
        self._ack_wake.set()

    def _take_acks(self, worker: str) -> list[Ack]:
        ids = self._acks.pop(worker, [])
        return [Ack(tuple(ids[i:i + MAX_BATCH])) for i in range(0, len(ids), MAX_BATCH)]

    def _send_acks(self) -> None:
        for worker in list(self._acks):
            acks = self._take_acks(worker)
            if acks:
                self.sessions.post(worker, *acks)

    async def _acknowledger(self) -> None:
        while True:
            await self._ack_wake.wait()
            await trio.sleep(ACK_DELAY)
            self._ack_wake = trio.Event()
            self._send_acks()

    async def _ticker(self) -> None:
        while True:
            await trio.sleep(TICK)
            await self._tick()

    async def _tick(self) -> None:
        await self.outcomes.retry()
        for peer in self.scheduler.hoarding(time.time()):
            session = self.sessions.get(peer)
            self.log.warning("task session closed: the worker holds tasks it does not run",
                             peer=peer)
            if session is not None:
                session.close()  # its handler requeues what it held
            else:
                await self._lost(peer)
        failed, requeued = self.scheduler.expire(time.time())
        if requeued:
            self.log.info("tasks requeued (worker silent or lease lapsed)", count=len(requeued))
            self._wake.set()
        await self._finish(failed)
        if self.scheduler.queued():
            self._wake.set()
        for peer in self.scheduler.prune_workers(time.time(), FORGET_WORKERS_AFTER):
            self.log.info("worker forgotten after an hour away", peer=peer)

    async def _lost(self, worker: str) -> None:
        await self._requeued(*self.scheduler.leave(worker, time.time()), worker=worker,
                             why="worker gone; its tasks are requeued")

    async def _requeued(self, requeued: list[str], failed: list[Record], *, worker: str,
                        why: str) -> None:
        if requeued:
            self.log.info(why, peer=worker, count=len(requeued))
        self._wake.set()
        await self._finish(failed)

    def _gossip_heartbeat(self, status: Status, now: float) -> None:
        """Heartbeats from the status topic: only ``tasks.workers`` (if set) count."""
        if not self.scheduler.heartbeat(status, now) and status.role == "worker" \
                and not self.scheduler.may_work(status.peer):
            self.log.debug("heartbeat from a peer not in tasks.workers ignored",
                           peer=status.peer)

    # -- frames from peers -------------------------------------------------------------------

    async def _on_frame(self, peer: str, frame: Any) -> bool:
        """Handle one frame; True when it made the peer a worker."""
        now = time.time()
        if isinstance(frame, Hello):
            if frame.role != "worker" or frame.capacity <= 0:
                return False
            if not self.scheduler.may_work(peer):
                self.log.warning("worker not in tasks.workers refused", peer=peer)
                return False
            outcome = self.scheduler.join(peer, frame.capacity, frame.handlers, now)
            self.log.info("worker joined", peer=peer, capacity=frame.capacity)
            await self._requeued(*outcome, worker=peer,
                                 why="worker reconnected; what it ran is requeued")
            return True
        if isinstance(frame, StatusFrame):
            if frame.status.peer == peer:
                self.scheduler.heartbeat(frame.status, now)
        elif isinstance(frame, Results):
            await self._on_results(peer, frame.results)
        elif isinstance(frame, Submit):
            await self._on_submit(peer, frame)
        elif isinstance(frame, Query):
            states = tuple(self.outcomes.shown(self.scheduler.tasks[i]) for i in frame.ids
                           if i in self.scheduler.tasks and i not in self._unaccepted)
            self.sessions.post(peer, States(frame.req, states))
        elif isinstance(frame, Cancel):
            for task_id in frame.ids:
                record = self.scheduler.tasks.get(task_id)
                if record is not None and record.origin == peer:
                    await self._cancel(task_id)
        else:
            self.log.warning("unexpected task frame ignored", peer=peer,
                             op=type(frame).__name__)
        return False

    async def _on_results(self, peer: str, results: tuple[Result, ...]) -> None:
        now = time.time()
        finals: list[Record] = []
        for result in results:
            if result.worker != peer:
                self.log.warning("result naming another worker ignored", peer=peer,
                                 task_id=result.task_id)
                continue
            record = self.scheduler.complete(result, now)
            if record is not None:
                finals.append(record)
            elif result.error is not None:
                self.log.info("task failed; retried", task_id=result.task_id,
                              worker=peer, error=result.error)
        # A result that finished nothing (a failure requeued, a duplicate) is acknowledged
        # now, before the wait below: a failed task may be assigned again meanwhile, and its
        # ack must reach the worker before that Assign (it would send the failure again as
        # the new attempt instead of running it). A resent result whose outcome is not
        # journaled yet (waiting for disk space, or being written for its first copy) is not
        # acknowledged: the ticker (or that first copy's handler) does it once it is durable.
        finished = {r.task.task_id for r in finals}
        undurable = self.outcomes.undurable
        now_ids = [r.task_id for r in results
                   if r.task_id not in finished and r.task_id not in undurable]
        if now_ids:
            self._ack(peer, now_ids)
        if await self._finish(finals):  # acknowledged once journaled; else resent
            undurable = self.outcomes.undurable
            ids = [r.task.task_id for r in finals if r.task.task_id not in undurable]
            if ids:
                self._ack(peer, ids)
        self._assign()  # slots freed, failures requeued

    async def _on_submit(self, peer: str, frame: Submit) -> None:
        if peer not in self.submitters:
            self.log.warning("submission from a peer not in tasks.submitters refused",
                             peer=peer, tasks=len(frame.tasks))
            reason = f"peer {peer} may not submit to this master (add it to tasks.submitters)"
            self.sessions.post(peer, Accepted(frame.req, (), tuple(
                (t.task_id, reason) for t in frame.tasks)))
            return
        try:
            ids, refused = await self.submit(list(frame.tasks), origin=peer)
        except (TaskError, DiskFullError) as exc:
            ids, refused = [], [(t.task_id, str(exc)) for t in frame.tasks]
        self.sessions.post(peer, Accepted(frame.req, tuple(ids), tuple(refused)))
        # A resubmitted task that already finished: send its outcome again.
        done = [r for r in map(self.scheduler.tasks.get, ids)
                if r is not None and self.outcomes.delivered(r)]
        for batch in batches([r.outcome() for r in done]):
            self.sessions.post(peer, Results(batch))
