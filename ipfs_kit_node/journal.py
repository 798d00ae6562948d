"""An append-only log of msgpack records, durable before acknowledged.

Used by the master's task journal and the pin queue: append a batch, fsync once; on open, a
torn record at the tail (the process died mid-write) is cut off with a log line; compaction
rewrites the file atomically (temp file, fsync, rename, folder fsync).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgpack

from .logs import get_logger

log = get_logger(__name__)


class RecordLog:
    def __init__(self, path: Path, *, sync: bool = True) -> None:
        self.path = path
        self.sync = sync
        self._fd: int | None = None

    def replay(self) -> list[Any]:
        """Every whole record, oldest first. Blocking: call it in a thread."""
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=True)
        unpacker.feed(data)
        docs: list[Any] = []
        good = 0
        try:
            for doc in unpacker:
                docs.append(doc)
                good = unpacker.tell()
        except (ValueError, msgpack.UnpackException) as exc:
            log.warning("record log holds a malformed record; the rest is cut off",
                        path=str(self.path), error=str(exc))
        if good < len(data):
            log.warning("record log had a torn tail (crash mid-write); cut off",
                        path=str(self.path), lost_bytes=len(data) - good)
        return docs

    def rewrite(self, docs: Iterable[Any]) -> None:
        """Replace the file with exactly ``docs``, atomically, and open it for appends. If
        this fails, the old file stays in place and open."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as f:
            for doc in docs:
                f.write(msgpack.packb(doc, use_bin_type=True))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self.close()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)

    def append(self, docs: list[Any]) -> None:
        """Write the records, then fsync: once this returns they survive a crash. All or
        nothing: a failed write is truncated away, never left as a torn record mid-file."""
        if not docs:
            return
        if self._fd is None:
            raise RuntimeError(f"the record log {self.path} is not open")
        data = b"".join(msgpack.packb(d, use_bin_type=True) for d in docs)
        start = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
            if self.sync:
                os.fsync(self._fd)
        except OSError:
            os.ftruncate(self._fd, start)
            raise

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
