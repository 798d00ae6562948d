"""TieredStore: memory → disk → remote, keyed by multihash, heat-scored, pinned, collected.

Every block lives on disk (written durably before ``put`` returns); the hottest also sit in
the memory tier; a pinned block may leave the disk only when the remote tier says it is safely
held elsewhere. Reads verify bytes against the CID whatever tier supplied them.

The index and the pins live in SQLite (blockdb.py): memory stays bounded whatever the block
count, a restart reads one row, and a pin moves with its blocks' reference counts in one
transaction. Blocks up to ``pack_threshold`` bytes are appended to pack files (packs.py),
bigger ones get a file each (disk.py); a row says which, and both layouts are read. Puts are
group-committed: one commit (and fsync) for the puts under way at once.
GC works in slices of ``PAGE_ROWS`` blocks with a checkpoint between them, and never takes a
block stored after it began, one being written, or one a pin in progress holds (``hold()``).

All methods run on the trio event loop; blocking file and database work runs on worker
threads.

``TieredStore`` is assembled from one class a job, each in its own module: the shared state
(core.py), the read path (reads.py), GC and compaction (gc.py), puts (writes.py), recovery
at open, reconcile and verify (recovery.py), pins (pinset.py). The block listing and the
service loop are here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import trio
from multiformats import CID

from ..children import run_exporter
from ..errors import PinnedBlockError, StoreError
from ..logs import get_logger
from ..service import TaskStatus
from .blocks import CidLike, key_of, to_cid
from .core import DAG_PB, StoreConfig
from .gc import GcResult
from .pinset import PinSet
from .reads import PendingRead
from .recovery import Recovery, VerifyResult
from .stats import StoreStats, TierStats
from .writes import MAX_BLOCK_SIZE, Writes

log = get_logger(__name__)

PARQUET_EXPORT_TIMEOUT = 60.0
TOUCH_PERIOD = 10.0


class TieredStore(PinSet, Recovery, Writes):
    """The node's block store. Build with ``await TieredStore.open(...)``; ``await close()``."""

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    async def open(cls, root: Path, config: StoreConfig | None = None, **kw: Any
                   ) -> TieredStore:
        store = cls(root, config, **kw)
        await store._load()
        return store

    async def snapshot(self, export_timeout: float | None = None) -> None:
        """Write buffered heat to the index and refresh the Parquet export."""
        await self._flush_touches()
        if self.config.parquet_export:
            await self._export_parquet(export_timeout or PARQUET_EXPORT_TIMEOUT)

    async def _export_parquet(self, timeout: float = PARQUET_EXPORT_TIMEOUT) -> None:
        """Best effort, in a child process (see index.py); a failure is only logged. One at
        a time: the export at start and the first periodic one ran side by side, both writing
        ``index.parquet.tmp``, so one renamed into place a file the other was still writing
        (a reader then met a footer that was not there yet: "Invalid data")."""
        if not self.db_path.exists():
            return
        async with self._export_lock:
            await run_exporter("ipfs_kit_node.storage.parquet_export", str(self.db_path),
                               str(self.parquet_path), timeout=timeout, what="parquet export")

    # -- blocks ------------------------------------------------------------------------------

    def add_pin_listener(self, listener: Callable[[CID, bool], None]) -> None:
        """Called with (root, True) after a pin and (root, False) after an unpin."""
        self._pin_listeners.append(listener)

    def add_listener(self, listener: Callable[[CID, int], None]) -> None:
        """Called with (cid, size) after each new block is stored (Bitswap serves waiters)."""
        self._listeners.append(listener)

    async def delete(self, cid: CidLike) -> bool:
        """Remove an unpinned block; False if absent. Raises PinnedBlockError."""
        cid, key, meta = await self._settled(cid)
        if meta is None:
            return False
        if meta.pins:
            raise PinnedBlockError(f"block {cid} is pinned; unpin it first")
        await self._remove([key], only_unpinned=True)
        return True

    async def __aiter__(self) -> AsyncIterator[CID]:
        after = b""
        while page := self._db.page(after, local=True):
            for _key, meta in page:
                yield to_cid(meta.cid)
            after = page[-1][0]
            await trio.lowlevel.checkpoint()

    def __len__(self) -> int:
        c = self._db.counters
        return c.blocks + c.remote_blocks

    # -- stats -------------------------------------------------------------------------------

    def stats(self) -> StoreStats:
        mem = self._memory.stats
        c = self._db.counters
        memory = TierStats(blocks=len(self._memory), bytes=self._memory.bytes_used,
                           hits=mem.hits, lookups=mem.hits + mem.misses)
        disk = TierStats(blocks=c.blocks, bytes=c.bytes, hits=self._disk_stats.hits,
                         lookups=self._disk_stats.lookups)
        far = TierStats(blocks=c.remote_blocks, bytes=c.remote_bytes,
                        hits=self._remote_stats.hits, lookups=self._remote_stats.lookups)
        packs, pack_bytes, pack_dead, pack_freed = self._pack_space()
        return StoreStats(memory=memory, disk=disk, remote=far, max_size=self.config.max_size,
                          memory_budget=self.config.memory_size, pins=c.pins,
                          pinned_blocks=c.pinned_blocks, packs=packs, pack_bytes=pack_bytes,
                          pack_dead_bytes=pack_dead, pack_freed_bytes=pack_freed)

    def heat(self, cid: CidLike) -> float:
        return self._heat_of(key_of(to_cid(cid)))

    # -- service -----------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Periodic GC, heat flushes and exports for as long as the node runs; closes the
        store at the end."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                if self.config.parquet_export:
                    nursery.start_soon(self._export_parquet)
                if self._unclean:
                    nursery.start_soon(self._guarded, self.reconcile)
                nursery.start_soon(self._every, self.config.gc_period, self.gc)
                nursery.start_soon(self._every, self.config.snapshot_period, self.snapshot)
                nursery.start_soon(self._every, TOUCH_PERIOD, self._flush_touches)
                task_status.started()
        finally:
            self._nursery = None
            try:
                await self.close()
            except (StoreError, OSError) as exc:
                log.error("store closed uncleanly; the next start indexes stray files in the "
                          "background", error=str(exc))


__all__ = ["DAG_PB", "MAX_BLOCK_SIZE", "GcResult", "PendingRead", "StoreConfig", "StoreStats",
           "TieredStore", "VerifyResult"]
