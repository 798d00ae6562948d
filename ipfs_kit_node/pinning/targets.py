"""Kubo and IPFS Cluster as pin targets: what the queue applies, what the remote tier asks."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import PinningError, RemoteRefusedError
from ..logs import get_logger
from .cluster import ClusterClient, PinOptions
from .kubo import KuboClient

log = get_logger(__name__)

Origins = Callable[[], list[str]]


class KuboTarget:
    name = "kubo"

    def __init__(self, client: KuboClient, origins: Origins) -> None:
        self.client = client
        self.origins = origins

    async def pin(self, cid: str, name: str) -> None:
        # Kubo fetches what it pins over Bitswap: point it at us first (best effort; it may
        # find the blocks elsewhere).
        addrs = self.origins()
        if addrs:
            try:
                await self.client.swarm_connect(addrs[:1])
            except PinningError as exc:
                log.info("Kubo could not dial us; pinning anyway", error=str(exc))
        await self.client.pin_add(cid, name=name or None)

    async def unpin(self, cid: str) -> None:
        try:
            await self.client.pin_rm(cid)
        except PinningError as exc:
            if "not pinned" not in str(exc):
                raise  # already unpinned is what we wanted

    async def is_pinned(self, cid: str) -> bool:
        return await self.client.is_pinned(cid)

    async def holders(self, cid: str) -> list[str]:
        doc = await self.client.id()
        return [str(a) for a in doc.get("Addresses") or []]


class ClusterTarget:
    name = "cluster"

    def __init__(self, client: ClusterClient, origins: Origins, *,
                 replication_min: int | None = None,
                 replication_max: int | None = None) -> None:
        self.client = client
        self.origins = origins
        self.replication_min = replication_min
        self.replication_max = replication_max

    async def pin(self, cid: str, name: str) -> None:
        await self.client.pin(cid, PinOptions(
            replication_min=self.replication_min, replication_max=self.replication_max,
            name=name or None, origins=tuple(self.origins()[:4]),
            metadata={"pinned-by": "ipfs-kit-node"}))

    async def unpin(self, cid: str) -> None:
        try:
            await self.client.unpin(cid)
        except RemoteRefusedError as exc:
            if "404" not in str(exc):
                raise  # not pinned there is what we wanted

    async def is_pinned(self, cid: str) -> bool:
        """Pinned on at least replication-min cluster peers (at least one)."""
        info = await self.client.status(cid)
        return info.pinned_on() >= max(1, self.replication_min or 1)

    async def holders(self, cid: str) -> list[str]:
        return (await self.client.status(cid)).holders()
