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

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import msgpack

from ..logs import get_logger
from ..protocols.tasks import EnvelopeError, Task
from ..protocols.tasks.codec import check_body
from .scheduler import Record, State

log = get_logger(__name__)

KEEP_FINISHED = 100_000


def submit_record(record: Record) -> dict[str, Any]:
    task = asdict(record.task)
    task["inputs"] = list(record.task.inputs)
    return {"op": "submit", "task": task, "origin": record.origin, "at": record.submitted_at}


def final_record(record: Record) -> dict[str, Any]:
    return {"op": "final", "id": record.task.task_id, "state": record.state.value,
            "worker": record.worker, "output": record.output, "error": record.error,
            "attempts": record.attempts, "at": record.finished_at}


class TaskJournal:
    def __init__(self, path: Path, *, sync: bool = True,
                 keep_finished: int = KEEP_FINISHED) -> None:
        self.path = path
        self.sync = sync
        self.keep_finished = keep_finished
        self._fd: int | None = None

    def open(self) -> list[Record]:
        """Replay, compact, and keep the file open for appends. Blocking: call in a thread."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        records = self._replay()
        finished = sorted((r for r in records if r.final), key=lambda r: r.finished_at or 0)
        dropped = max(0, len(finished) - self.keep_finished)
        keep = [r for r in records if not r.final] + finished[dropped:]
        keep.sort(key=lambda r: r.submitted_at)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            for record in keep:
                f.write(msgpack.packb(submit_record(record), use_bin_type=True))
                if record.final:
                    f.write(msgpack.packb(final_record(record), use_bin_type=True))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        return keep

    def _replay(self) -> list[Record]:
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=True)
        unpacker.feed(data)
        records: dict[str, Record] = {}
        good = 0
        try:
            for doc in unpacker:
                self._apply(records, doc)
                good = unpacker.tell()
        except (ValueError, msgpack.UnpackException) as exc:
            log.warning("task journal ends in a torn record; cut off", path=str(self.path),
                        kept_bytes=good, error=str(exc))
        if good < len(data):
            log.warning("task journal had a torn tail (crash mid-write); cut off",
                        path=str(self.path), lost_bytes=len(data) - good)
        return list(records.values())

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
        if not docs:
            return
        if self._fd is None:
            raise RuntimeError("the task journal is not open")
        data = b"".join(msgpack.packb(d, use_bin_type=True) for d in docs)
        start = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            if self.sync:
                os.fsync(self._fd)
        except OSError:
            os.ftruncate(self._fd, start)  # all or nothing: no torn record mid-file
            raise

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
