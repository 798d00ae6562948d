"""The store as a node service: opens it and runs GC and snapshots for the node's lifetime."""

from __future__ import annotations

from pathlib import Path

import trio

from ..config import StorageSection
from ..errors import ClosedNodeError
from ..service import TaskStatus
from .remote import RemoteTier
from .store import StoreConfig, TieredStore


def store_config(section: StorageSection) -> StoreConfig:
    return StoreConfig(
        max_size=section.max_size, memory_size=section.memory_size,
        gc_watermark=section.gc_watermark, gc_period=section.gc_period,
        half_life=section.heat_half_life, snapshot_period=section.snapshot_period,
        sync=section.sync, pack_threshold=section.pack_threshold,
    )


class StoreService:
    """Owns the node's TieredStore for the node's lifetime."""

    name = "store"

    def __init__(self, repo: Path, section: StorageSection) -> None:
        self._repo = repo
        self._config = store_config(section)
        self._store: TieredStore | None = None
        self.remote: RemoteTier | None = None  # set before the node starts (pinning)

    @property
    def store(self) -> TieredStore:
        if self._store is None:
            raise ClosedNodeError("the block store is not open")
        return self._store

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._store = await TieredStore.open(self._repo, self._config, remote=self.remote)
        try:
            await self._store.run(task_status=task_status)
        finally:
            self._store = None
