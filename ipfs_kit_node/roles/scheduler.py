"""The master's scheduler: tasks and workers in, assignments and final outcomes out. No I/O.

Times are wall-clock seconds (``time.time()``), because deadlines come from submitters and
records outlive restarts. A task moves queued → assigned → done | failed | cancelled, and
back to queued when its worker fails it (up to ``retries`` times), vanishes (missed heartbeats
or a closed stream) or lets its lease lapse. Each task reaches exactly one final state; any
later result for it is a duplicate and is dropped.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from dataclasses import dataclass, field, replace
from enum import StrEnum

from ..protocols.tasks import Result, Status, Task
from ..protocols.tasks.frames import TaskInfo

# A task assigned this many times without any worker finishing it is failed: it is
# probably what kills the workers.
MAX_ASSIGNMENTS = 10
# What one worker may claim to run at once (a lying peer must not take every task).
MAX_CAPACITY = 1024
# Workers known only from gossip (no session yet) are views anyone can create: at most this
# many; past it a heartbeat from an unknown peer is ignored until prune_workers makes room.
MAX_GOSSIP_WORKERS = 1024


class State(StrEnum):
    QUEUED = "queued"
    ASSIGNED = "assigned"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL = frozenset({State.DONE, State.FAILED, State.CANCELLED})


@dataclass
class Record:
    task: Task
    origin: str  # "local" (the control socket) or the submitting peer's ID
    submitted_at: float
    state: State = State.QUEUED
    attempts: int = 0  # assignments so far
    failures: int = 0  # error results so far
    worker: str | None = None
    output: str | None = None
    error: str | None = None
    lease_until: float = 0.0
    finished_at: float | None = None
    assigned_to: set[str] = field(default_factory=set)  # every worker it was given to

    @property
    def final(self) -> bool:
        return self.state in FINAL

    def outcome(self) -> Result:
        """The final outcome as submitters see it (an error names why it did not finish)."""
        error = None if self.state is State.DONE else self.error or self.state.value
        return Result(self.task.task_id, self.worker or "", self.output, error, self.attempts)

    def info(self) -> TaskInfo:
        return TaskInfo(self.task.task_id, self.state.value, self.task.handler, self.worker,
                        self.output, self.error, self.attempts)


@dataclass
class WorkerView:
    peer: str
    capacity: int
    handlers: frozenset[str] = frozenset()  # empty: unknown, assume any
    running: set[str] = field(default_factory=set)
    last_seen: float = 0.0
    connected: bool = True
    cpu: float = 0.0
    memory: float = 0.0
    disk_free: int = 0
    done: int = 0

    @property
    def free(self) -> int:
        return self.capacity - len(self.running)

    def accepts(self, handler: str) -> bool:
        return not self.handlers or handler in self.handlers


class Scheduler:
    def __init__(self, *, lease: float = 30.0, retries: int = 2,
                 heartbeat_timeout: float = 5.0, allowed: frozenset[str] = frozenset()
                 ) -> None:
        self.lease = lease
        self.retries = retries
        self.heartbeat_timeout = heartbeat_timeout
        self.allowed = allowed  # tasks.workers: the only peers that may be workers (if set)
        self.tasks: dict[str, Record] = {}
        self.workers: dict[str, WorkerView] = {}
        self._open: set[str] = set()  # IDs of tasks not yet final
        self._finished: deque[str] = deque()  # IDs in the order they finished
        self._queue: list[tuple[int, int, str]] = []  # (-priority, seq, task ID)
        self._seq = itertools.count()

    # -- tasks -------------------------------------------------------------------------------

    def submit(self, task: Task, origin: str, now: float) -> tuple[Record, bool]:
        """The task's record, and whether it is new (a resubmitted ID is not run twice)."""
        known = self.tasks.get(task.task_id)
        if known is not None:
            return known, False
        record = Record(task, origin, now)
        self.restore(record)
        return record, True

    def restore(self, record: Record) -> None:
        """A record from the journal: unfinished tasks are queued again."""
        self.tasks[record.task.task_id] = record
        if record.final:
            self._finished.append(record.task.task_id)
        else:
            self._open.add(record.task.task_id)
            record.state, record.worker = State.QUEUED, None
            self._push(record)

    def _push(self, record: Record) -> None:
        heapq.heappush(self._queue, (-record.task.priority, next(self._seq),
                                     record.task.task_id))

    def queued(self) -> int:
        return sum(1 for i in self._open if self.tasks[i].state is State.QUEUED)

    def open_tasks(self) -> int:
        return len(self._open)

    def cancel(self, task_id: str, now: float) -> tuple[Record | None, str | None]:
        """The record if this call finished it, and the worker to tell (if it was running)."""
        record = self.tasks.get(task_id)
        if record is None or record.final:
            return None, None
        worker = record.worker if record.state is State.ASSIGNED else None
        self._finish(record, State.CANCELLED, now, error="cancelled")
        return record, worker

    def withdraw(self, task_id: str) -> Record | None:
        """Forget a task as if never submitted (its submission could not be journaled);
        its record, whose ``worker`` (if it was assigned) should be told to cancel it."""
        record = self.tasks.pop(task_id, None)
        if record is None:
            return None
        self._open.discard(task_id)
        for view in self.workers.values():
            view.running.discard(task_id)
        return record  # a queue entry left behind is skipped by assign()

    def forget_finished(self, keep: int) -> int:
        """Drop all but the newest ``keep`` finished tasks from memory (months of running);
        returns how many were dropped. The journal keeps the same number."""
        dropped = 0
        while len(self._finished) > keep:
            record = self.tasks.get(self._finished.popleft())
            if record is not None and record.final:
                del self.tasks[record.task.task_id]
                dropped += 1
        return dropped

    # -- workers -----------------------------------------------------------------------------

    def join(self, peer: str, capacity: int, handlers: tuple[str, ...], now: float
             ) -> tuple[list[str], list[Record]]:
        """A worker's (new) session. What we thought it ran is queued again: a restarted
        worker has forgotten it, and a live one's late result is still accepted."""
        view = self.workers.get(peer)
        if view is None:
            view = self.workers[peer] = WorkerView(peer, capacity)
        outcome = self._requeue_all(view, now)
        view.capacity = max(0, min(capacity, MAX_CAPACITY))
        view.handlers = frozenset(handlers)
        view.connected, view.last_seen = True, now
        return outcome

    def prune_workers(self, now: float, silent_for: float) -> list[str]:
        """Forget workers gone (no stream, no heartbeat, no task) this long."""
        gone = [w.peer for w in self.workers.values()
                if not w.connected and not w.running and now - w.last_seen > silent_for]
        for peer in gone:
            del self.workers[peer]
        return gone

    def handlers_offered(self) -> frozenset[str] | None:
        """Handlers the workers we know allow; None while we know no worker's list yet."""
        lists = [w.handlers for w in self.workers.values() if w.handlers]
        return frozenset().union(*lists) if lists else None

    def may_work(self, peer: str) -> bool:
        """Whether ``tasks.workers`` (when set) lists the peer."""
        return not self.allowed or peer in self.allowed

    def heartbeat(self, status: Status, now: float) -> bool:
        """A worker's heartbeat (its session's or gossip's); False when ignored: a peer not in
        ``tasks.workers``, or an unknown one past the bound of gossip-only workers."""
        if not self.may_work(status.peer):
            return False
        view = self.workers.get(status.peer)
        if view is None:
            if status.role != "worker" or sum(
                    not w.connected for w in self.workers.values()) >= MAX_GOSSIP_WORKERS:
                return False
            view = self.workers[status.peer] = WorkerView(status.peer, status.capacity,
                                                          connected=False)
        view.last_seen = now
        view.cpu, view.memory, view.disk_free = status.cpu, status.memory, status.disk_free
        # Alive: leases are renewed, for as many tasks as it says it runs. A worker starts
        # what it is given at once, so a peer that takes tasks and runs none (it claims
        # capacity and reads the bytes) lets their leases lapse: see ``hoarding``.
        budget = max(0, status.running)
        for task_id in view.running:
            if budget <= 0:
                break
            record = self.tasks.get(task_id)
            if record is not None and record.worker == status.peer:
                record.lease_until = now + self.lease
                budget -= 1
        return True

    def hoarding(self, now: float) -> list[str]:
        """Connected workers that still heartbeat but hold a task whose lease has lapsed: they
        take work they do not run. Their sessions should end (their tasks are requeued)."""
        out = []
        for view in self.workers.values():
            if not view.connected or now - view.last_seen > self.heartbeat_timeout:
                continue  # the silent are expire()'s
            for task_id in view.running:
                record = self.tasks.get(task_id)
                if record is not None and record.state is State.ASSIGNED \
                        and record.worker == view.peer and now > record.lease_until:
                    out.append(view.peer)
                    break
        return out

    def leave(self, peer: str, now: float) -> tuple[list[str], list[Record]]:
        """The worker's stream closed: (task IDs queued again, tasks failed for good)."""
        view = self.workers.get(peer)
        if view is None:
            return [], []
        view.connected = False
        return self._requeue_all(view, now)

    def _requeue_all(self, view: WorkerView, now: float) -> tuple[list[str], list[Record]]:
        requeued: list[str] = []
        failed: list[Record] = []
        for task_id in sorted(view.running):
            record = self.tasks.get(task_id)
            if record is not None and record.state is State.ASSIGNED \
                    and record.worker == view.peer:
                if record.attempts >= MAX_ASSIGNMENTS:  # it probably kills its workers
                    self._finish(record, State.FAILED, now, error=(
                        f"assigned {record.attempts} times and no worker finished it"))
                    failed.append(record)
                else:
                    self._requeue(record)
                    requeued.append(task_id)
        view.running.clear()
        return requeued, failed

    def _requeue(self, record: Record) -> None:
        record.state, record.worker, record.lease_until = State.QUEUED, None, 0.0
        self._push(record)

    # -- decisions ---------------------------------------------------------------------------

    def assign(self, now: float) -> dict[str, list[Task]]:
        """Queued tasks for workers with free slots, highest priority first; the least
        loaded worker (free share of its capacity, then CPU) gets each task."""
        live = [w for w in self.workers.values()
                if w.connected and w.free > 0 and now - w.last_seen <= self.heartbeat_timeout]
        out: dict[str, list[Task]] = {}
        skipped: list[tuple[int, int, str]] = []
        while live and self._queue:
            entry = heapq.heappop(self._queue)
            record = self.tasks.get(entry[2])
            if record is None or record.state is not State.QUEUED:
                continue  # cancelled or finished while queued
            able = [w for w in live if w.accepts(record.task.handler)]
            if not able:
                skipped.append(entry)
                continue
            worker = max(able, key=lambda w: (w.free / w.capacity, -w.cpu))
            record.state, record.worker = State.ASSIGNED, worker.peer
            record.assigned_to.add(worker.peer)
            record.attempts += 1
            record.lease_until = now + self.lease
            worker.running.add(record.task.task_id)
            out.setdefault(worker.peer, []).append(replace(record.task, attempt=record.attempts))
            if worker.free <= 0:
                live.remove(worker)
        for entry in skipped:
            heapq.heappush(self._queue, entry)
        return out

    def complete(self, result: Result, now: float) -> Record | None:
        """The record when this result finishes the task; None for a duplicate, a stale
        failure, or a failure that will be retried."""
        record = self.tasks.get(result.task_id)
        view = self.workers.get(result.worker)
        if view is not None:
            view.running.discard(result.task_id)
        if record is None or record.final or result.worker not in record.assigned_to:
            return None  # unknown, finished, or from a peer we never gave it to
        current = record.state is State.ASSIGNED and record.worker == result.worker \
            and result.attempt == record.attempts
        if result.error is None:  # a success finishes the task, even from an earlier lease
            if record.worker is not None and record.worker != result.worker:
                previous = self.workers.get(record.worker)
                if previous is not None:
                    previous.running.discard(result.task_id)
            if view is not None:
                view.done += 1
            record.worker = result.worker
            self._finish(record, State.DONE, now, output=result.output)
            return record
        if not current:
            return None
        record.failures += 1
        record.error = result.error
        if record.failures > self.retries:
            self._finish(record, State.FAILED, now, error=result.error)
            return record
        self._requeue(record)
        return None

    def expire(self, now: float) -> tuple[list[Record], list[str]]:
        """Deadlines and lapsed leases: (tasks failed now, task IDs queued again)."""
        failed: list[Record] = []
        requeued: list[str] = []
        for view in self.workers.values():
            if view.running and now - view.last_seen > self.heartbeat_timeout:
                again, lost = self._requeue_all(view, now)
                requeued += again
                failed += lost
        for task_id in list(self._open):
            record = self.tasks[task_id]
            deadline = record.task.deadline
            if deadline is not None and now > deadline:
                self._release(record)
                self._finish(record, State.FAILED, now, error="deadline exceeded")
                failed.append(record)
            elif record.state is State.ASSIGNED and now > record.lease_until:
                self._release(record)
                if record.attempts >= MAX_ASSIGNMENTS:
                    self._finish(record, State.FAILED, now, error=(
                        f"assigned {record.attempts} times and no worker finished it"))
                    failed.append(record)
                else:
                    self._requeue(record)
                    requeued.append(record.task.task_id)
        return failed, requeued

    def _release(self, record: Record) -> None:
        if record.worker is not None and record.worker in self.workers:
            self.workers[record.worker].running.discard(record.task.task_id)

    def _finish(self, record: Record, state: State, now: float, *, output: str | None = None,
                error: str | None = None) -> None:
        self._release(record)
        self._open.discard(record.task.task_id)
        self._finished.append(record.task.task_id)
        record.state, record.finished_at = state, now
        record.output, record.error = output, error
