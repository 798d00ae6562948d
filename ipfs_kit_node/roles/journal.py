"""The master's task journal: accepted tasks and final outcomes, durable before acknowledged.

An append-only file of msgpack records, written and fsynced in batches (one fsync per
submit frame or result batch), so an accepted task survives kill -9 of the master::

    {"op": "submit", "task": {...}, "origin": "local" | peer ID, "at": unix time}
    {"op": "final", "id": task ID, "state": ..., "worker": ..., "output": ..., "error": ...,
     "attempts": n, "at": unix time}

Opening replays it: a torn record at the tail (the crash happened mid-write) is cut off, and
the file is rewritten compactly (open tasks plus the newest ``keep_finished`` outcomes).
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from ..journal import RecordLog
from ..logs import get_logger
from ..protocols.tasks import EnvelopeError, Task
from ..protocols.tasks.codec import check_body
from .scheduler import Record, State

log = get_logger(__name__)

KEEP_FINISHED = 100_000


_TASK_FIELDS = tuple(f.name for f in fields(Task))


def submit_record(record: Record) -> dict[str, Any]:
    """The task's fields as they are (``asdict`` deep-copies: ~20 us a task, a tenth of the
    master's time in a burst); msgpack packs tuples and lists alike."""
    task = {name: getattr(record.task, name) for name in _TASK_FIELDS}
    return {"op": "submit", "task": task, "origin": record.origin, "at": record.submitted_at}


def final_record(record: Record) -> dict[str, Any]:
    return {"op": "final", "id": record.task.task_id, "state": record.state.value,
            "worker": record.worker, "output": record.output, "error": record.error,
            "attempts": record.attempts, "at": record.finished_at}


class TaskJournal:
    def __init__(self, path: Path, *, sync: bool = True,
                 keep_finished: int = KEEP_FINISHED) -> None:
        self.path = path
        self.keep_finished = keep_finished
        self._log = RecordLog(path, sync=sync)
        self.appended = 0  # records since the last compaction

    def open(self) -> list[Record]:
        """Replay, compact, and keep the file open for appends. Blocking: call in a thread."""
        records: dict[str, Record] = {}
        for doc in self._log.replay():
            try:
                self._apply(records, doc)
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("task journal record skipped", error=str(exc))
        return self.compact(list(records.values()))

    def compact(self, records: list[Record]) -> list[Record]:
        """Rewrite the file as open tasks plus the newest finished ones; returns those kept.
        Blocking: call it in a thread, with no append running."""
        finished = sorted((r for r in records if r.final), key=lambda r: r.finished_at or 0)
        dropped = max(0, len(finished) - self.keep_finished)
        keep = [r for r in records if not r.final] + finished[dropped:]
        keep.sort(key=lambda r: r.submitted_at)
        docs: list[dict[str, Any]] = []
        for record in keep:
            docs.append(submit_record(record))
            if record.final:
                docs.append(final_record(record))
        self._log.rewrite(docs)
        self.appended = 0
        return keep

    @staticmethod
    def _apply(records: dict[str, Record], doc: Any) -> None:
        if not isinstance(doc, dict):
            raise ValueError("journal record is not a map")
        if doc.get("op") == "submit":
            try:
                task = check_body(Task, doc.get("task"))
            except EnvelopeError as exc:
                raise ValueError(f"journal holds a malformed task: {exc}") from None
            assert isinstance(task, Task)
            records.setdefault(task.task_id, Record(task, str(doc.get("origin", "local")),
                                                    float(doc.get("at", 0.0))))
        elif doc.get("op") == "final":
            record = records.get(doc.get("id", ""))
            if record is None:
                return
            record.state = State(doc["state"])
            record.worker, record.output = doc.get("worker"), doc.get("output")
            record.error, record.attempts = doc.get("error"), int(doc.get("attempts", 0))
            record.finished_at = doc.get("at")
        else:
            raise ValueError(f"unknown journal record {doc.get('op')!r}")

    def append(self, docs: list[dict[str, Any]]) -> None:
        """Write the records, then fsync: once this returns they survive a crash."""
        self._log.append(docs)
        self.appended += len(docs)

    def close(self) -> None:
        self._log.close()
