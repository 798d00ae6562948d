"""The store's counters as ``TieredStore.stats()`` reports them (``repo/stat``'s Tiers): per
tier, and the pack files' bytes: dead ones still holding disk (compaction's to free) apart
from those whose holes already gave their space back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class TierStats:
    blocks: int = 0
    bytes: int = 0
    hits: int = 0
    lookups: int = 0

    @property
    def hit_ratio(self) -> float:
        return self.hits / self.lookups if self.lookups else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"blocks": self.blocks, "bytes": self.bytes, "hits": self.hits,
                "lookups": self.lookups, "hit_ratio": round(self.hit_ratio, 4)}


@dataclass
class StoreStats:
    memory: TierStats
    disk: TierStats
    remote: TierStats
    max_size: int
    memory_budget: int
    pins: int
    pinned_blocks: int
    packs: int = 0
    pack_bytes: int = 0  # bytes of pack files up to their committed ends
    pack_dead_bytes: int = 0  # of those, dead records (deleted blocks) still on disk
    pack_freed_bytes: int = 0  # dead records whose disk space holes already freed

    def as_dict(self) -> dict[str, Any]:
        return {"memory": {**self.memory.as_dict(), "budget": self.memory_budget},
                "disk": {**self.disk.as_dict(), "max_size": self.max_size,
                         "packs": self.packs, "pack_bytes": self.pack_bytes,
                         "pack_dead_bytes": self.pack_dead_bytes,
                         "pack_freed_bytes": self.pack_freed_bytes},
                "remote": self.remote.as_dict(),
                "pins": self.pins, "pinned_blocks": self.pinned_blocks}
