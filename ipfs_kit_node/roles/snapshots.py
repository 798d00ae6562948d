"""Every ``tasks.snapshot_period`` the master writes its cluster state: packed (msgpack) in a
worker thread, then turned into Parquet files by a child process (see state.py), so neither
the CPU of packing many records nor pyarrow's memory lands on the daemon's event loop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import msgpack
import structlog
import trio

from .scheduler import Record, Scheduler, WorkerView
from .state import cluster_state, export_in_child


@dataclass
class _Snapshot:
    """The scheduler's workers and records, copied on the loop (two list copies), packed and
    written in a worker thread."""

    me: str
    workers: list[WorkerView]
    records: list[Record]

    def write(self, path: Path) -> None:
        state = cluster_state(self.me, self.workers, self.records, time.time())
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(msgpack.packb(state, use_bin_type=True))
        tmp.replace(path)


class StateSnapshots:
    def __init__(self, me: str, scheduler: Scheduler, state_dir: Path, period: float,
                 log: structlog.stdlib.BoundLogger) -> None:
        self.me = me
        self.scheduler = scheduler
        self.state_dir = state_dir
        self.period = period
        self.log = log

    async def run(self) -> None:
        snapshot = self.state_dir / "state.msgpack"
        while True:
            await trio.sleep(self.period)
            # Built and packed in a thread: with many tasks kept (up to keep_finished) this is
            # hundreds of ms of CPU that would stall every stream and request on the loop. The
            # records are read as they are, maybe mid-update: a view, not a journal.
            view = _Snapshot(self.me, list(self.scheduler.workers.values()),
                             list(self.scheduler.tasks.values()))
            try:
                await trio.to_thread.run_sync(view.write, snapshot)
            except OSError as exc:
                self.log.warning("cluster state snapshot not written", error=str(exc))
                continue
            await export_in_child(snapshot, self.state_dir)
