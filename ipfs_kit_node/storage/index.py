"""The index's Parquet export, and small file helpers.

The index itself is the SQLite database of blockdb.py. After each periodic export a
short-lived child process (``python -m ipfs_kit_node.storage.parquet_export``) reads it
(read-only, a page at a time) and writes ``datastore/index.parquet`` for other programs, so
the daemon itself never loads pyarrow (about 30 MiB of resident memory).

Parquet schema of ``index.parquet`` (readable by pandas, duckdb, polars while the daemon runs;
the file is replaced atomically; read it through one open file, ``pq.read_table(open(path,
"rb"))``, since pyarrow given a path stats it and then opens it, and a replacement between the
two makes it look for the footer at the old size):

| column        | type                    | meaning                                               |
|---------------|-------------------------|-------------------------------------------------------|
| multihash     | binary                  | the store key (the CID's multihash)                   |
| cid           | string                  | the CID the block was first stored under              |
| size          | int64                   | block size in bytes                                   |
| tier          | string                  | where it is held: disk (and maybe memory) or remote   |
| heat          | float64                 | decayed access count as of ``heat_epoch``             |
| heat_epoch    | int64                   | clock // half-life when ``heat`` was last updated     |
| pinned        | bool                    | covered by a direct or recursive pin                  |
| first_access  | timestamp[ms, tz=UTC]   | when the block was stored                             |
| last_access   | timestamp[ms, tz=UTC]   | last read or write                                    |
| access_count  | int64                   | reads and writes since stored                         |
| pack          | int64 (null: own file)  | the pack file holding it (``blocks/packs/N.pack``)    |

File metadata key ``ipfs_kit_node.half_life`` holds the heat half-life in seconds.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ..journal import fsync_dir, replace_durably
from .blockdb import cid_text

COLUMNS = ("multihash", "cid", "size", "tier", "heat", "heat_epoch", "pinned",
           "first_access", "last_access", "access_count", "pack")
EXPORT_ROWS = 100_000  # rows per Parquet row group: the exporter's memory stays bounded


def export_parquet(db: Path, target: Path, half_life: float = 3600.0) -> int:
    """Write the Parquet export of the index database atomically; returns the row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([
        ("multihash", pa.binary()), ("cid", pa.string()), ("size", pa.int64()),
        ("tier", pa.string()), ("heat", pa.float64()), ("heat_epoch", pa.int64()),
        ("pinned", pa.bool_()), ("first_access", pa.timestamp("ms", tz="UTC")),
        ("last_access", pa.timestamp("ms", tz="UTC")), ("access_count", pa.int64()),
        ("pack", pa.int64()),
    ], metadata={"ipfs_kit_node.half_life": str(half_life)})
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    tmp = target.with_suffix(".parquet.tmp")
    rows = 0
    try:
        cursor = conn.execute("SELECT key, cid, size, remote, heat, epoch, pins, first, last, "
                              "count, pack FROM blocks")
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            while batch := cursor.fetchmany(EXPORT_ROWS):
                cols = list(zip(*batch, strict=True))
                writer.write_table(pa.table({
                    "multihash": [bytes(k) for k in cols[0]],
                    "cid": [cid_text(c) for c in cols[1]],
                    "size": cols[2], "tier": ["remote" if r else "disk" for r in cols[3]],
                    "heat": cols[4], "heat_epoch": cols[5], "pinned": [p > 0 for p in cols[6]],
                    "first_access": [int(t * 1000) for t in cols[7]],
                    "last_access": [int(t * 1000) for t in cols[8]],
                    "access_count": cols[9], "pack": cols[10],
                }, schema=schema))
                rows += len(batch)
            if not rows:
                writer.write_table(schema.empty_table())
        replace_durably(tmp, target)
    except BaseException:
        remove_quietly(tmp)
        raise
    finally:
        conn.close()
    return rows


def remove_quietly(path: Path, *, durably: bool = False) -> None:
    """Remove a file if present; ``durably``: the removal survives a crash once this returns."""
    try:
        path.unlink()
    except FileNotFoundError:
        return
    if durably:
        fsync_dir(path.parent)
