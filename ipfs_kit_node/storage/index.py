"""Block metadata: in memory, an append-only journal, snapshots (msgpack) and a Parquet export.

The index is a dict keyed by multihash. Every put and delete is appended to
``datastore/index.journal`` (msgpack records). The whole index is written to
``datastore/index.msgpack`` periodically and on shutdown (temp file, fsync, rename, folder
fsync), after which the journal keeps only the records appended since the snapshot's index
was captured; on start the snapshot is read and the journal replayed (a torn last record is
ignored; records already in the snapshot replay harmlessly, each sets a state outright).
When either is missing or damaged, or the last shutdown was not clean, the store rebuilds the
index against the disk tier, the source of truth for which blocks exist.

After each snapshot a short-lived child process (``python -m
ipfs_kit_node.storage.parquet_export``) turns it into ``datastore/index.parquet`` for other
programs, so the daemon itself never loads pyarrow (about 30 MiB of resident memory).

Parquet schema of ``index.parquet`` (readable by pandas, duckdb, polars while the daemon runs;
the file is replaced atomically):

| column        | type                    | meaning                                               |
|---------------|-------------------------|-------------------------------------------------------|
| multihash     | binary                  | the store key (the CID's multihash)                   |
| cid           | string                  | the CID the block was first stored under              |
| size          | int64                   | block size in bytes                                   |
| tier          | string                  | highest tier holding it: memory, disk or remote       |
| heat          | float64                 | decayed access count as of ``heat_epoch``             |
| heat_epoch    | int64                   | clock // half-life when ``heat`` was last updated     |
| pinned        | bool                    | covered by a direct or recursive pin                  |
| first_access  | timestamp[ms, tz=UTC]   | when the block was stored                             |
| last_access   | timestamp[ms, tz=UTC]   | last read or write                                    |
| access_count  | int64                   | reads and writes since stored                         |

File metadata key ``ipfs_kit_node.half_life`` holds the heat half-life in seconds.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

from ..errors import StoreFullError, is_disk_full
from ..journal import atomic_write, fsync_dir, replace_durably


@dataclass(slots=True)
class BlockMeta:
    cid: str
    size: int
    first_access: float
    last_access: float
    heat: float = 0.0
    heat_epoch: int = 0
    access_count: int = 0
    pins: int = 0  # how many pins cover it (a recursive pin counts once per block)
    remote: bool = False  # evicted locally, held by the remote tier


class Journal:
    """Append-only msgpack records: ("put", key, cid, size, t), ("del", key) and
    ("remote", key, flag, cid, size).

    Appends are not fsynced by default: an unclean start rebuilds the index from the block
    files, so losing the tail costs only heat metadata. A record that recovery relies on (a
    block moved to the remote tier, whose local file is about to be deleted) is appended with
    ``sync=True`` and is durable before ``append`` returns.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        created = not path.exists()
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        if created:
            try:  # a synced record in a file whose name a crash loses is lost too
                fsync_dir(path.parent)
            except OSError:
                os.close(self._fd)
                raise

    def append(self, *record: Any, sync: bool = False) -> None:
        """Append one whole record, or nothing: a failed write is cut back off the file.
        With ``sync`` the record is fsynced before this returns (or call ``sync()``)."""
        data = memoryview(msgpack.packb(record))
        start = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            while data:
                data = data[os.write(self._fd, data):]
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, start)
            if is_disk_full(exc):
                raise StoreFullError(
                    f"the disk is full: cannot append to {self.path}; free space on that "
                    "disk (or lower storage.max_size so GC keeps the store smaller)"
                ) from exc
            raise
        if sync:
            self.sync()

    def sync(self) -> None:
        """Make every record appended so far durable (blocking: a worker thread's job)."""
        os.fsync(self._fd)

    def end(self) -> int:
        """The offset past the last record: records appended later lie beyond it."""
        return os.lseek(self._fd, 0, os.SEEK_END)

    def drop_before(self, offset: int) -> None:
        """Cut the records before ``offset`` (a durable snapshot holds them now), keeping those
        appended since. Not durable until ``sync()`` (a crash before replays the cut records
        too, harmlessly). Call it on the thread that appends, so that no record can land
        between reading the kept tail and writing it back; it is short (no fsync).

        A record fsynced before the action it describes must never be in the tail (it is
        rewritten unsynced here): the caller keeps such appends out of the snapshot's window.
        """
        end = os.lseek(self._fd, 0, os.SEEK_END)
        tail = bytearray()
        while offset + len(tail) < end:
            chunk = os.pread(self._fd, end - offset - len(tail), offset + len(tail))
            if not chunk:
                break
            tail += chunk
        os.ftruncate(self._fd, 0)
        data = memoryview(tail)
        while data:
            data = data[os.write(self._fd, data):]

    def close(self) -> None:
        os.close(self._fd)

    @staticmethod
    def replay(path: Path) -> Iterator[tuple[Any, ...]]:
        """Records in order; stops quietly at a torn or garbled tail."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return
        unpacker = msgpack.Unpacker(max_buffer_size=len(data) + 1)
        unpacker.feed(data)
        while True:
            try:
                record = next(unpacker)
            except StopIteration:
                return
            except Exception:
                return
            if isinstance(record, list | tuple) and record:
                yield tuple(record)


COLUMNS = ("multihash", "cid", "size", "tier", "heat", "heat_epoch", "pinned",
           "first_access", "last_access", "access_count")
SNAPSHOT_VERSION = 1


def write_snapshot(path: Path, rows: list[tuple[Any, ...]], half_life: float) -> None:
    """Rows as (multihash, BlockMeta, tier), written atomically as one msgpack document."""
    packed = msgpack.packb({
        "version": SNAPSHOT_VERSION, "half_life": half_life, "columns": COLUMNS,
        "rows": [(key, m.cid, m.size, tier, m.heat, m.heat_epoch, m.pins > 0,
                  m.first_access, m.last_access, m.access_count) for key, m, tier in rows],
    })
    atomic_write(path, packed)


def _load(path: Path) -> dict[str, Any]:
    doc = msgpack.unpackb(path.read_bytes(), strict_map_key=False)
    if not isinstance(doc, dict) or doc.get("version") != SNAPSHOT_VERSION:
        raise ValueError(f"{path} is not an index snapshot this version can read")
    return doc


def read_snapshot(path: Path) -> dict[bytes, BlockMeta]:
    """The snapshot's entries; raises on a missing or damaged file."""
    out: dict[bytes, BlockMeta] = {}
    for key, cid, size, tier, heat, epoch, _, first, last, count in _load(path)["rows"]:
        out[bytes(key)] = BlockMeta(
            cid=str(cid), size=int(size), first_access=float(first), last_access=float(last),
            heat=float(heat), heat_epoch=int(epoch), access_count=int(count),
            remote=tier == "remote",
        )
    return out


def export_parquet(snapshot: Path, target: Path) -> int:
    """Write the Parquet export of a snapshot atomically; returns the row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([
        ("multihash", pa.binary()), ("cid", pa.string()), ("size", pa.int64()),
        ("tier", pa.string()), ("heat", pa.float64()), ("heat_epoch", pa.int64()),
        ("pinned", pa.bool_()), ("first_access", pa.timestamp("ms", tz="UTC")),
        ("last_access", pa.timestamp("ms", tz="UTC")), ("access_count", pa.int64()),
    ])
    doc = _load(snapshot)
    columns: list[list[Any]] = [list(c) for c in zip(*doc["rows"], strict=True)] if doc["rows"] \
        else [[] for _ in COLUMNS]
    for name in ("first_access", "last_access"):
        i = COLUMNS.index(name)
        columns[i] = [int(t * 1000) for t in columns[i]]
    table = pa.table(dict(zip(COLUMNS, columns, strict=True)), schema=schema)
    table = table.replace_schema_metadata({"ipfs_kit_node.half_life": str(doc["half_life"])})
    tmp = target.with_suffix(".parquet.tmp")
    try:
        pq.write_table(table, tmp, compression="zstd")
        replace_durably(tmp, target)
    except BaseException:
        remove_quietly(tmp)
        raise
    return len(doc["rows"])


def remove_quietly(path: Path, *, durably: bool = False) -> None:
    """Remove a file if present; ``durably``: the removal survives a crash once this returns."""
    try:
        path.unlink()
    except FileNotFoundError:
        return
    if durably:
        fsync_dir(path.parent)
