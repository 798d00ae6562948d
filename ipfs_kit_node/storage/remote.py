"""The remote tier: somewhere else that holds blocks safely (Kubo, IPFS Cluster).

Only the interface lives here; the pinning drivers implement it. The store asks it before it
evicts a *pinned* block locally, and fetches such a block back through it when read.
"""

from __future__ import annotations

from typing import Protocol

from multiformats import CID


class RemoteTier(Protocol):
    name: str

    async def is_safely_held(self, cid: CID) -> bool:
        """True when losing our copy loses nothing (pinned on enough remote peers)."""
        ...

    async def fetch(self, cid: CID) -> bytes | None:
        """The block's bytes from elsewhere, or None; the store verifies them."""
        ...


class NoRemoteTier:
    """The default: nothing is held elsewhere, so pinned blocks always stay local."""

    name = "none"

    async def is_safely_held(self, cid: CID) -> bool:
        return False

    async def fetch(self, cid: CID) -> bytes | None:
        return None
