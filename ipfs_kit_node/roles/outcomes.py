"""Final task outcomes: journaled first, then delivered exactly once (waiters, the results
topic, the submitting peer, the result pinner).

An outcome is shown to nobody before it is fsynced: a crash then would run the task again,
so waiters, queries and listings still see the task as running (or queued), and its worker
is not acknowledged (it keeps the result and resends it). Outcomes the journal refused (a
full disk), or whose journaling was cancelled half-way, wait in ``unjournaled``; ``retry``
(the master's ticker) journals and delivers them once it can.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog
import trio

from ..errors import DiskFullError
from ..protocols.tasks import Result
from ..protocols.tasks.frames import MAX_BATCH, Ack, Results, TaskInfo, batches
from .committer import JournalCommitter, JournalError
from .gossip import TaskGossip
from .journal import final_record
from .scheduler import Record, State

JOURNAL_RETRY = 2.0  # seconds between attempts to journal outcomes a full disk refused

Post = Callable[..., bool]  # (peer, *frames) -> queued


class Outcomes:
    def __init__(self, committer: JournalCommitter, post: Post, gossip: TaskGossip,
                 pin: Callable[[str], None] | None, log: structlog.stdlib.BoundLogger, *,
                 current: Callable[[Record], bool] = lambda record: True) -> None:
        self.committer = committer
        # False for a record withdrawn (its submission, journaled in the same batch or just
        # before, was refused): its outcome is delivered to nobody.
        self.current = current
        self.post = post
        self.gossip = gossip
        self.pin = pin  # None: results are not pinned here (tasks.pin_results = false)
        self.log = log
        # Final, but the journal refused them (a full disk): retried by ``retry``.
        self.unjournaled: dict[str, Record] = {}
        # Final in memory but not fsynced yet (being journaled, or in unjournaled): not
        # acknowledged to workers nor shown to anyone as final.
        self.undurable: set[str] = set()
        self.retry_at = 0.0
        self._failing = False  # logged once per episode, not per attempt
        self.waiters: dict[str, trio.Event] = {}

    # -- what others see ---------------------------------------------------------------------

    def delivered(self, record: Record) -> bool:
        """Final and fsynced: only then may anyone see the outcome."""
        return record.final and record.task.task_id not in self.undurable

    def shown(self, record: Record) -> TaskInfo:
        """The task as others may see it: an outcome not yet journaled is not shown (a crash
        now would run the task again), so the task still reads as running (or queued)."""
        if not record.final or self.delivered(record):
            return record.info()
        state = State.ASSIGNED if record.worker is not None else State.QUEUED
        return TaskInfo(record.task.task_id, state.value, record.task.handler, record.worker,
                        None, None, record.attempts)

    async def wait(self, record: Record, timeout: float) -> TaskInfo:
        """The task once its outcome is delivered, or as it stands after ``timeout``."""
        if not self.delivered(record):
            event = self.waiters.setdefault(record.task.task_id, trio.Event())
            with trio.move_on_after(timeout):
                await event.wait()
        return self.shown(record)

    # -- delivery ----------------------------------------------------------------------------

    async def finish(self, records: list[Record]) -> bool:
        """Journal final outcomes, then deliver each exactly once. False when the journal
        refused them: they wait in ``unjournaled``, unseen. Cancelled half-way (the session
        that brought them closed), they wait there too: ``retry`` finishes the job."""
        records = [r for r in records if self.current(r)]
        if not records:
            return True
        ids = [r.task.task_id for r in records]
        self.undurable.update(ids)
        try:
            await self.committer.durable([final_record(r) for r in records])
        except (DiskFullError, JournalError) as exc:
            if not self._failing:
                self._failing = True
                self.log.warning("task outcomes not journaled yet; retried every "
                                 f"{JOURNAL_RETRY:g} s", count=len(records), error=str(exc))
                self.retry_at = time.monotonic() + JOURNAL_RETRY
            self.unjournaled.update(zip(ids, records, strict=True))
            return False
        except BaseException:  # cancelled: journaled or not, retry finishes the job
            self.unjournaled.update(zip(ids, records, strict=True))
            raise
        self.undurable.difference_update(ids)
        records = [r for r in records if self.current(r)]
        by_origin: dict[str, list[Result]] = {}
        results: list[Result] = []
        for record in records:
            result = record.outcome()
            by_origin.setdefault(record.origin, []).append(result)
            results.append(result)
            self._wake_waiter(record.task.task_id)
            if record.output is not None and self.pin is not None:
                self.pin(record.output)
        self.gossip.publish(results)
        for origin, mine in by_origin.items():
            if origin != "local":  # a submitter offline now asks again when it reconnects
                for batch in batches(mine):
                    self.post(origin, Results(batch))
        return True

    def _wake_waiter(self, task_id: str) -> None:
        event = self.waiters.pop(task_id, None)
        if event is not None:
            event.set()

    async def retry(self) -> None:
        """Journal and deliver the outcomes the journal refused, once ``JOURNAL_RETRY`` has
        passed; then acknowledge to their workers the results held back."""
        if not self.unjournaled or time.monotonic() < self.retry_at:
            return
        self.retry_at = time.monotonic() + JOURNAL_RETRY
        waiting = [r for r in self.unjournaled.values() if self.current(r)]
        # Withdrawn since (their submission failed with them): forgotten, and acknowledged
        # below, so that their workers forget them too.
        gone = [r for r in self.unjournaled.values() if not self.current(r)]
        self.undurable.difference_update(r.task.task_id for r in gone)
        self.unjournaled = {}
        if waiting and not await self.finish(waiting):
            self._acknowledge(gone)
            return
        self._failing = False
        if waiting:
            self.log.info("task outcomes journaled after an earlier failure",
                          count=len(waiting))
        self._acknowledge(waiting + gone)  # the acks we held back

    def _acknowledge(self, records: list[Record]) -> None:
        by_worker: dict[str, list[str]] = {}
        for record in records:
            if record.worker is not None:
                by_worker.setdefault(record.worker, []).append(record.task.task_id)
        for worker, ids in by_worker.items():
            for start in range(0, len(ids), MAX_BATCH):
                self.post(worker, Ack(tuple(ids[start:start + MAX_BATCH])))
