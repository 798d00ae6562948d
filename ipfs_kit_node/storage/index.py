"""Block metadata: in memory, an append-only journal, and Parquet snapshots.

The index is a dict keyed by multihash. Every put and delete is appended to
``datastore/index.journal`` (msgpack records) before the caller hears back; the whole index is
written to ``datastore/index.parquet`` periodically and on shutdown (temp file, fsync, rename),
after which the journal starts afresh. On start the snapshot is read and the journal replayed;
a torn last record is ignored. When either is missing or damaged, or the last shutdown was not
clean, the store rebuilds the index against the disk tier, which is the source of truth for
which blocks exist.

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
import errno
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import StoreFullError

SCHEMA = pa.schema([
    ("multihash", pa.binary()),
    ("cid", pa.string()),
    ("size", pa.int64()),
    ("tier", pa.string()),
    ("heat", pa.float64()),
    ("heat_epoch", pa.int64()),
    ("pinned", pa.bool_()),
    ("first_access", pa.timestamp("ms", tz="UTC")),
    ("last_access", pa.timestamp("ms", tz="UTC")),
    ("access_count", pa.int64()),
])


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
    """Append-only msgpack records: ("put", key, cid, size, t) and ("del", key)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def append(self, *record: Any) -> None:
        """Append one whole record, or nothing: a failed write is cut back off the file."""
        data = memoryview(msgpack.packb(record))
        start = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            while data:
                data = data[os.write(self._fd, data):]
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, start)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StoreFullError(f"the disk is full: cannot append to {self.path}") from exc
            raise

    def reset(self) -> None:
        os.ftruncate(self._fd, 0)

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


def write_snapshot(path: Path, rows: list[tuple[Any, ...]], half_life: float) -> None:
    """Rows as (multihash, BlockMeta, tier); written atomically."""
    columns: dict[str, list[Any]] = {name: [] for name in SCHEMA.names}
    for key, meta, tier in rows:
        columns["multihash"].append(key)
        columns["cid"].append(meta.cid)
        columns["size"].append(meta.size)
        columns["tier"].append(tier)
        columns["heat"].append(meta.heat)
        columns["heat_epoch"].append(meta.heat_epoch)
        columns["pinned"].append(meta.pins > 0)
        columns["first_access"].append(int(meta.first_access * 1000))
        columns["last_access"].append(int(meta.last_access * 1000))
        columns["access_count"].append(meta.access_count)
    table = pa.table(columns, schema=SCHEMA).replace_schema_metadata(
        {"ipfs_kit_node.half_life": str(half_life)}
    )
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp, compression="zstd")
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_snapshot(path: Path) -> dict[bytes, BlockMeta]:
    """The snapshot's entries; raises on a missing or damaged file."""
    table = pq.read_table(path)
    if not table.schema.remove_metadata().equals(SCHEMA):
        raise ValueError(f"{path} has an unexpected schema")
    out: dict[bytes, BlockMeta] = {}
    cols = {name: table.column(name).to_pylist() for name in
            ("multihash", "cid", "size", "heat", "heat_epoch", "access_count")}
    firsts = table.column("first_access").cast(pa.int64()).to_pylist()
    lasts = table.column("last_access").cast(pa.int64()).to_pylist()
    remote = [t == "remote" for t in table.column("tier").to_pylist()]
    for i, key in enumerate(cols["multihash"]):
        out[key] = BlockMeta(
            cid=cols["cid"][i], size=cols["size"][i],
            first_access=firsts[i] / 1000, last_access=lasts[i] / 1000,
            heat=cols["heat"][i], heat_epoch=cols["heat_epoch"][i],
            access_count=cols["access_count"][i], remote=remote[i],
        )
    return out


def remove_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
