"""Simulated power loss: record what a process made durable, rebuild a folder from only that.

In the writing process, ``install(repo, shadow)`` wraps ``os.fsync``, ``os.unlink``/``remove``
and ``os.replace``/``rename``. A file fsync copies the file's bytes (read just *before* the real
fsync, so a concurrent append is not counted) into ``shadow/`` once the fsync has returned; a
folder fsync records its entries at that moment. The folder's state when ``install`` runs counts
as durable. Files and folders are named by an id per inode (a fresh id once an inode is
unlinked, so a reused inode number is a new object).

Afterwards ``rebuild(shadow, target)`` creates the repo as a power cut would leave it in the
most pessimistic case: a folder holds only the entries of its last fsync (none if it was never
fsynced), a file holds the bytes of its last fsync (empty if it was never fsynced). Every
unsynced write, rename, creation and deletion is lost. The log is append-only, one line per
event; a line cut by SIGKILL is ignored (that fsync never returned to its caller).

SQLite (the block index and pins, ``datastore/index.sqlite``) fsyncs from C, where these
wrappers cannot see it. So ``install`` also wraps ``sqlite3.connect`` (for databases inside the
repo) with a Connection whose ``commit()`` records, once it has returned, the database file and
its ``-wal`` file (their bytes at that moment, read together, so the pair is consistent) and
their names in their folder. That is SQLite's documented contract, modelled rather than its
individual fsyncs: in WAL mode with ``PRAGMA synchronous=FULL`` the WAL is fsynced before a
commit returns (and the folder, when the WAL file is new), and a checkpoint fsyncs the WAL
before it writes the database file; a power cut then leaves the last committed transaction.
A commit made with ``synchronous`` below FULL records nothing (NORMAL does not fsync the WAL
at commit), so a store that acknowledged work on such a commit fails the test. Transactions
committed with ``execute("COMMIT")`` are not seen either: the store must call ``commit()``.
The ``-shm`` file is not recorded: SQLite never fsyncs it and rebuilds it from the WAL when
the first connection opens (it comes back empty). What the model trusts and does not test:
SQLite's own write ordering inside a commit or checkpoint (torn WAL frames, partial
checkpoints), which its checksums and its own test suite cover.

Pack files (``blocks/packs/*.pack``, storage/packs.py) are only ever appended to, so a power
cut may also keep *part* of what was appended after their last fsync: the disk may have
written some of those pages, or grown the file without writing its data (zeros). Given the
killed repo (``live``), ``rebuild`` models that for each pack: after its last fsynced bytes
it appends a random prefix of the bytes appended since, and zeroes the end of that prefix
one time in three. The store must cut such a torn tail at start (or index the whole records
in it, which were never acknowledged) and never serve it.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

EVENTS = "events.jsonl"
OBJECTS = "objects"


class _Recorder:
    def __init__(self, repo: Path, shadow: Path) -> None:
        self.repo = str(repo.resolve())
        self.shadow = shadow
        (shadow / OBJECTS).mkdir(parents=True, exist_ok=True)
        self.log_fd = os.open(shadow / EVENTS, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.ids: dict[int, int] = {}
        self.next_id = 0
        self.seq = 0
        self.lock = threading.RLock()

    def inside(self, path: str) -> bool:
        return path == self.repo or path.startswith(self.repo + os.sep)

    def id_of(self, ino: int) -> int:
        with self.lock:
            if ino not in self.ids:
                self.next_id += 1
                self.ids[ino] = self.next_id
            return self.ids[ino]

    def forget(self, ino: int | None) -> None:
        with self.lock:
            if ino is not None:
                self.ids.pop(ino, None)

    def emit(self, event: dict[str, Any]) -> None:
        os.write(self.log_fd, (json.dumps(event) + "\n").encode())

    def tick(self) -> int:
        """When a state was read: of two fsyncs of one object, the later-read state wins,
        whichever fsync returned last (threads may finish out of order)."""
        with self.lock:
            self.seq += 1
            return self.seq

    def listing(self, path: str) -> tuple[int, dict[str, list[Any]]]:
        with self.lock:
            return self.tick(), {e.name: [self.id_of(e.inode()), e.is_dir(follow_symlinks=False)]
                                 for e in os.scandir(path)}

    def save_file(self, ident: int, seq: int, data: bytes) -> None:
        name = f"{ident}.{seq}"
        (self.shadow / OBJECTS / name).write_bytes(data)
        self.emit({"t": "file", "id": ident, "seq": seq, "copy": name})

    def initial(self) -> None:
        """Everything there now is durable (it was, before this process started)."""
        self.emit({"t": "root", "id": self.id_of(os.lstat(self.repo).st_ino)})
        for folder, _, files in os.walk(self.repo):
            seq, entries = self.listing(folder)
            self.emit({"t": "dir", "id": self.id_of(os.lstat(folder).st_ino), "seq": seq,
                       "entries": entries})
            for name in files:
                path = os.path.join(folder, name)
                with open(path, "rb") as f:
                    self.save_file(self.id_of(os.fstat(f.fileno()).st_ino), self.tick(),
                                   f.read())


    def sqlite_commit(self, conn: sqlite3.Connection, db_path: str) -> None:
        """A commit returned: the database and its WAL as they are now are durable, if the
        connection runs with synchronous=FULL (or EXTRA)."""
        (level,), = conn.execute("PRAGMA synchronous").fetchall()
        if level < 2:
            return
        folder = os.path.dirname(db_path)
        with self.lock:
            seq = self.tick()
            dir_id = self.id_of(os.lstat(folder).st_ino)
            for path in (db_path, db_path + "-wal"):
                try:
                    with open(path, "rb") as f:
                        ident = self.id_of(os.fstat(f.fileno()).st_ino)
                        data = f.read()
                except FileNotFoundError:
                    continue
                self.save_file(ident, seq, data)
                self.emit({"t": "link", "dir": dir_id, "name": os.path.basename(path),
                           "id": ident, "seq": seq})


def _wrap_sqlite(rec: _Recorder) -> None:
    """sqlite3.connect of a database inside the repo returns a connection whose commit()
    is recorded (see the module docstring)."""
    real_connect = sqlite3.connect

    class RecordedConnection(sqlite3.Connection):
        shim_path = ""

        def commit(self) -> None:
            super().commit()
            rec.sqlite_commit(self, self.shim_path)

    def connect(database: Any, *args: Any, **kw: Any) -> sqlite3.Connection:
        path = os.path.realpath(database) if database != ":memory:" else ""
        if not path or not rec.inside(path) or "factory" in kw:
            return real_connect(database, *args, **kw)
        conn = real_connect(database, *args, factory=RecordedConnection, **kw)
        conn.shim_path = path
        return conn

    sqlite3.connect = connect  # type: ignore[assignment]


def _lstat_ino(path: Any) -> int | None:
    try:
        return os.lstat(path).st_ino
    except OSError:
        return None


def install(repo: Path, shadow: Path) -> None:
    """Start recording in this process (call before anything writes to ``repo``)."""
    rec = _Recorder(repo, shadow)
    rec.initial()
    real_fsync = os.fsync

    def fsync(fd: Any) -> None:
        fd = fd if isinstance(fd, int) else fd.fileno()
        path = os.readlink(f"/proc/self/fd/{fd}")
        if not rec.inside(path):
            real_fsync(fd)
            return
        with rec.lock:
            st = os.fstat(fd)
            ident = rec.id_of(st.st_ino)
        if stat.S_ISDIR(st.st_mode):
            seq, entries = rec.listing(path)
            real_fsync(fd)
            rec.emit({"t": "dir", "id": ident, "seq": seq, "entries": entries})
        else:
            seq = rec.tick()
            with open(f"/proc/self/fd/{fd}", "rb") as f:
                data = f.read()
            real_fsync(fd)
            rec.save_file(ident, seq, data)

    def dropping(real: Callable[..., Any]) -> Callable[..., Any]:
        """unlink/remove: a removed inode's id is never given to a new file."""
        def wrapper(path: Any, *args: Any, **kw: Any) -> Any:
            with rec.lock:  # no other thread may see the freed inode number before forget
                ino = _lstat_ino(path)
                result = real(path, *args, **kw)
                rec.forget(ino)
                return result
        return wrapper

    def renaming(real: Callable[..., Any]) -> Callable[..., Any]:
        """replace/rename: the inode it overwrites is gone."""
        def wrapper(src: Any, dst: Any, *args: Any, **kw: Any) -> Any:
            with rec.lock:
                old, new = _lstat_ino(dst), _lstat_ino(src)
                result = real(src, dst, *args, **kw)
                if old is not None and old != new:
                    rec.forget(old)
                return result
        return wrapper

    _wrap_sqlite(rec)
    os.fsync = fsync
    os.unlink = dropping(os.unlink)
    os.remove = dropping(os.remove)
    os.replace = renaming(os.replace)
    os.rename = renaming(os.rename)


def _torn_tail(durable: Path, live: Path, rng: random.Random) -> bytes:
    """Part of what was appended to a pack after its last fsync, maybe partly zeroed."""
    try:
        now = live.read_bytes()
    except OSError:
        return b""
    before = durable.stat().st_size
    if len(now) <= before or now[:before] != durable.read_bytes():
        return b""  # not an append of the durable bytes (truncated or rewritten since)
    tail = now[before:before + rng.randint(0, len(now) - before)]
    if tail and rng.random() < 1 / 3:
        keep = rng.randint(0, len(tail) - 1)
        tail = tail[:keep] + bytes(len(tail) - keep)
    return tail


def rebuild(shadow: Path, target: Path, live: Path | None = None,
            seed: int | None = None) -> dict[str, int]:
    """Build ``target`` from the durable state recorded in ``shadow``; counts of what was kept.
    With ``live`` (the repo as the killed process left it), pack files also keep a torn part
    of their unsynced appends (see the module docstring)."""
    files: dict[int, tuple[int, str]] = {}
    dirs: dict[int, tuple[int, dict[str, list[Any]]]] = {}
    links: list[dict[str, Any]] = []  # names made durable by a SQLite commit
    root: int | None = None
    for line in (shadow / EVENTS).read_bytes().split(b"\n"):
        try:
            event = json.loads(line)
        except ValueError:
            continue  # the last line, cut by the kill
        if event["t"] == "root":
            root = event["id"]
        elif event["t"] == "link":
            links.append(event)
        elif event["t"] == "dir":
            if event["seq"] > dirs.get(event["id"], (0, {}))[0]:
                dirs[event["id"]] = (event["seq"], event["entries"])
        elif event["seq"] > files.get(event["id"], (0, ""))[0]:
            files[event["id"]] = (event["seq"], event["copy"])
    assert root is not None, "no durable state recorded"
    for link in sorted(links, key=lambda e: e["seq"]):  # after the folder's last fsync only
        seq, entries = dirs.get(link["dir"], (0, {}))
        if link["seq"] > seq:
            dirs[link["dir"]] = (seq, {**entries, link["name"]: [link["id"], False]})
    counts = {"files": 0, "empty_files": 0, "dirs": 0, "torn_tails": 0}
    rng = random.Random(seed)

    def build(ident: int, path: Path, rel: Path) -> None:
        path.mkdir()
        counts["dirs"] += 1
        for name, (child, is_dir) in dirs.get(ident, (0, {}))[1].items():
            if is_dir:
                build(child, path / name, rel / name)
                continue
            if child in files:
                shutil.copyfile(shadow / OBJECTS / files[child][1], path / name)
                counts["files"] += 1
            else:
                (path / name).touch()  # its name is durable, none of its bytes
                counts["empty_files"] += 1
            if live is not None and name.endswith(".pack"):
                tail = _torn_tail(path / name, live / rel / name, rng)
                if tail:
                    with open(path / name, "ab") as f:
                        f.write(tail)
                    counts["torn_tails"] += 1

    build(root, target, Path())
    return counts
