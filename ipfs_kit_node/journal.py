"""Durable files: an append-only log of msgpack records, and atomic whole-file writes.

``RecordLog`` is used by the master's task journal and the pin queue: append a batch, fsync
once; on open, a torn record at the tail (the process died mid-write) is cut off with a log
line; compaction rewrites the file atomically.

``atomic_write``, ``replace_durably`` and ``fsync_dir`` are the one place that knows what makes
a rename durable: the new file's bytes are fsynced before the rename and its folder after it.
Without the folder fsync a power loss can bring the old file back (or lose a new one) even
though the caller already acted on the new one.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgpack

from .logs import get_logger

log = get_logger(__name__)


def fsync_dir(path: Path) -> None:
    """Make the folder's entries (creations, renames, deletions in it) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def mkdir_durably(path: Path, mode: int = 0o700) -> None:
    """Create a folder (and missing parents), each new one durable in its parent."""
    if path.is_dir():
        return
    mkdir_durably(path.parent, mode)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=mode)
        fsync_dir(path.parent)


def replace_durably(tmp: Path, target: Path) -> None:
    """Rename a finished temp file over ``target``: its bytes, the rename, then the folder
    are fsynced, so after a crash ``target`` is either the old file or the whole new one."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)
    fsync_dir(target.parent)


def atomic_write(path: Path, data: bytes | Iterable[bytes], *, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` durably (temp file beside it, fsync, rename, folder
    fsync). On failure the temp file is removed, the old file stays, and the OSError rises."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            for chunk in [data] if isinstance(data, bytes | bytearray | memoryview) else data:
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


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
        mkdir_durably(self.path.parent)
        atomic_write(self.path, (msgpack.packb(doc, use_bin_type=True) for doc in docs))
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
