"""The master's view of the cluster, as plain data and as Arrow (Parquet) for other processes.

Written after each snapshot period to ``<repo>/tasks/`` as two Parquet files, replaced
atomically, so pandas, duckdb or a dashboard can read them while the daemon runs::

    workers.parquet  peer: string, capacity: int64, running: int64, done: int64,
                     cpu: float64 (percent), memory: float64 (percent), disk_free: int64,
                     connected: bool, last_seen: float64 (seconds ago), handlers: list<string>
    tasks.parquet    task_id: string, handler: string, state: string, priority: int64,
                     inputs: list<string>, origin: string, worker: string (null if none),
                     attempts: int64, output: string (result CID or null),
                     providers: list<string> (peers holding the output: the worker, and the
                     master once it has pinned it), error: string, submitted_at: timestamp[ms],
                     finished_at: timestamp[ms]

``python -m ipfs_kit_node.roles.state SNAPSHOT DIR`` converts the msgpack snapshot; the
daemon runs it in a child process so pyarrow's memory never lives in the daemon.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..children import run_exporter

if TYPE_CHECKING:
    import pyarrow as pa

    from .scheduler import Record, WorkerView


EXPORT_TIMEOUT = 60.0


def cluster_state(master: str, workers_: Iterable[WorkerView], records: Iterable[Record],
                  now: float) -> dict[str, Any]:
    """Plain data (msgpack-able). Pass copies of the scheduler's lists to call it in a thread."""
    workers = [{
        "peer": w.peer, "capacity": w.capacity, "running": len(w.running), "done": w.done,
        "cpu": w.cpu, "memory": w.memory, "disk_free": w.disk_free, "connected": w.connected,
        "last_seen": round(now - w.last_seen, 3), "handlers": sorted(w.handlers),
    } for w in workers_]
    tasks = [{
        "task_id": r.task.task_id, "handler": r.task.handler, "state": r.state.value,
        "priority": r.task.priority, "inputs": list(r.task.inputs), "origin": r.origin,
        "worker": r.worker, "attempts": r.attempts, "output": r.output,
        "providers": [p for p in (r.worker, master) if p] if r.output else [],
        "error": r.error, "submitted_at": r.submitted_at, "finished_at": r.finished_at,
    } for r in records]
    return {"master": master, "generated_at": now, "workers": workers, "tasks": tasks}


def tables(state: dict[str, Any]) -> dict[str, pa.Table]:
    import pyarrow as pa

    workers = pa.schema([
        ("peer", pa.string()), ("capacity", pa.int64()), ("running", pa.int64()),
        ("done", pa.int64()), ("cpu", pa.float64()), ("memory", pa.float64()),
        ("disk_free", pa.int64()), ("connected", pa.bool_()), ("last_seen", pa.float64()),
        ("handlers", pa.list_(pa.string())),
    ])
    tasks = pa.schema([
        ("task_id", pa.string()), ("handler", pa.string()), ("state", pa.string()),
        ("priority", pa.int64()), ("inputs", pa.list_(pa.string())), ("origin", pa.string()),
        ("worker", pa.string()), ("attempts", pa.int64()), ("output", pa.string()),
        ("providers", pa.list_(pa.string())), ("error", pa.string()),
        ("submitted_at", pa.timestamp("ms")), ("finished_at", pa.timestamp("ms")),
    ])
    rows = [{**t, "submitted_at": _ms(t["submitted_at"]), "finished_at": _ms(t["finished_at"])}
            for t in state["tasks"]]
    return {"workers": pa.Table.from_pylist(state["workers"], schema=workers),
            "tasks": pa.Table.from_pylist(rows, schema=tasks)}


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1000)


def write_parquet(state: dict[str, Any], directory: Path) -> dict[str, Path]:
    """``workers.parquet`` and ``tasks.parquet`` in ``directory``, each replaced atomically."""
    import pyarrow.parquet as pq

    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, table in tables(state).items():
        target = directory / f"{name}.parquet"
        tmp = directory / f".{name}.parquet.tmp"
        pq.write_table(table, tmp)
        tmp.replace(target)
        out[name] = target
    return out


async def export_in_child(snapshot: Path, directory: Path) -> None:
    await run_exporter("ipfs_kit_node.roles.state", str(snapshot), str(directory),
                       timeout=EXPORT_TIMEOUT, what="cluster state export")


def main(argv: list[str]) -> int:
    import msgpack

    if len(argv) != 2:
        print("usage: python -m ipfs_kit_node.roles.state SNAPSHOT DIR", file=sys.stderr)
        return 2
    try:
        state = msgpack.unpackb(Path(argv[0]).read_bytes(), raw=False)
        write_parquet(state, Path(argv[1]))
    except (OSError, ValueError) as exc:
        print(f"cluster state export failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
