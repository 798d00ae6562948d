"""The block store: ``TieredStore`` (memory → disk → remote), usable as a library.

    store = await TieredStore.open(Path("repo"), StoreConfig(max_size=10**10))
    await store.put(cid, data)          # verified against the CID, durable on return
    data = await store.get(cid)         # verified on every disk read
    await store.pin(cid)                # recursive: the whole DAG stays
    async for cid in store: ...
    await store.close()                 # snapshot the index, mark a clean shutdown
"""

from ..errors import (
    BlockNotFoundError,
    HashMismatchError,
    InvalidCidError,
    PinnedBlockError,
    StoreError,
    StoreFullError,
)
from .heat import HeatModel
from .memory import MemoryTier
from .remote import NoRemoteTier, RemoteTier
from .store import GcResult, StoreConfig, StoreStats, TieredStore, VerifyResult

__all__ = [
    "BlockNotFoundError",
    "GcResult",
    "HashMismatchError",
    "HeatModel",
    "InvalidCidError",
    "MemoryTier",
    "NoRemoteTier",
    "PinnedBlockError",
    "RemoteTier",
    "StoreConfig",
    "StoreError",
    "StoreFullError",
    "StoreStats",
    "TieredStore",
    "VerifyResult",
]
