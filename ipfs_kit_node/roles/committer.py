"""Group commit of the master's task journal: records from concurrent callers are written and
fsynced together (one fsync per batch), and each caller returns once its own are durable.

Commits are written in the order they were queued (a batch is one append and one fsync), so
a record queued after another is never durable before it. A commit may *linger*: it waits
up to its linger time for another commit to ride along with (a submission whose caller also
waits for the outcome goes out with that outcome: one fsync for both instead of two).

Only this loop appends to the journal, so it is also where the journal is compacted (every
``COMPACT_AFTER`` records): appends wait while the file is rewritten.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
import trio

from ..errors import DiskFullError, is_disk_full
from .journal import TaskJournal
from .mesh import TaskError

COMPACT_AFTER = 500_000  # journal records appended before it is rewritten


class JournalError(TaskError):
    """The task journal cannot be written (not a full disk: that is DiskFullError)."""

    http_status = 503


@dataclass
class _Commit:
    docs: list[dict[str, Any]]
    done: trio.Event = field(default_factory=trio.Event)
    error: BaseException | None = None


class JournalCommitter:
    """``durable(docs)`` returns once the records are fsynced; ``run`` is the writer loop.

    ``forget_finished(keep)`` is called before a compaction, so memory keeps what the
    compacted journal keeps.
    """

    def __init__(self, journal: TaskJournal, forget_finished: Callable[[int], object],
                 log: structlog.stdlib.BoundLogger) -> None:
        self.journal = journal
        self.forget_finished = forget_finished
        self.log = log
        self._commits: list[_Commit] = []
        self._wake = trio.Event()
        self._due = math.inf  # when the first lingering commit queued must go out
        self._idle = trio.CancelScope()  # the writer's wait, until then at most
        self.stopped = False

    async def durable(self, docs: list[dict[str, Any]], linger: float = 0.0) -> None:
        """Returns once the records are fsynced (group commit with concurrent callers).

        ``linger``: seconds the write may wait for another commit to go out with (it goes
        with the first one queued meanwhile, or alone once the time is up).

        Raises:
            DiskFullError: the disk is full (new tasks are refused until space is freed).
            JournalError: any other write failure.
        """
        if not docs:
            return
        if self.stopped:
            raise JournalError(f"the task journal {self.journal.path} is closed: the master "
                               "is stopping")
        commit = _Commit(docs)
        self._commits.append(commit)
        if linger > 0:
            self._due = min(self._due, trio.current_time() + linger)
            self._idle.deadline = self._due
        else:
            self._wake.set()
        await commit.done.wait()
        error = commit.error
        if error is None:
            return
        if is_disk_full(error):
            raise DiskFullError(f"disk full: the task journal {self.journal.path} cannot be "
                                f"written ({error.strerror}); new tasks are refused until "
                                "space is freed") from error
        raise JournalError(f"the task journal {self.journal.path} cannot be written: "
                           f"{error}") from error

    async def run(self) -> None:
        self.stopped = False  # restarted after a crash: writing again
        try:
            await self._run()
        except trio.Cancelled:  # the master stopping: nothing is written any more
            self.stopped = True
            raise
        finally:  # commits still queued fail (their callers may be shielded)
            stopping = OSError("the task journal's writer stopped")
            batch, self._commits = self._commits, []
            for commit in batch:
                commit.error = stopping
                commit.done.set()

    async def _run(self) -> None:
        while True:
            self._idle = trio.CancelScope(deadline=self._due)
            with self._idle:  # until a commit that does not linger, or a linger's end
                await self._wake.wait()
            self._wake = trio.Event()
            self._due = math.inf
            batch, self._commits = self._commits, []
            if not batch:
                continue
            docs = [d for commit in batch for d in commit.docs]
            try:
                await trio.to_thread.run_sync(self.journal.append, docs)
            except Exception as exc:  # every waiter hears of it; this loop goes on
                self.log.error("task journal write failed", error=str(exc),
                               path=str(self.journal.path), records=len(docs))
                for commit in batch:
                    commit.error = exc
            finally:
                for commit in batch:
                    commit.done.set()
            if self.journal.appended > COMPACT_AFTER:  # appends wait: we are the only writer
                self.forget_finished(self.journal.keep_finished)
                try:  # from the file itself: it holds exactly what was acknowledged
                    kept = await trio.to_thread.run_sync(self.journal.open)
                    self.log.info("task journal compacted", tasks=len(kept))
                except (OSError, ValueError) as exc:
                    self.log.error("task journal compaction failed", error=str(exc))
