"""An IPFS Cluster REST API client (v1.1 wire format), on httpx and trio.

Streaming endpoints send one JSON object per line, 204 with no body when there is nothing,
and the ``X-Stream-Error`` trailer (empty when all went well): a non-empty trailer raises.
Auth is basic, or a JWT (bearer) the caller got from ``POST /token``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from .base import HttpService

PIN_OK = frozenset({"pinned", "sharded", "remote"})
STATUS_FILTERS = frozenset({
    "undefined", "cluster_error", "pin_error", "unpin_error", "error", "pinned", "pinning",
    "unpinning", "unpinned", "remote", "pin_queued", "unpin_queued", "queued", "sharded",
    "unexpectedly_unpinned",
})


@dataclass(frozen=True)
class PeerStatus:
    peer: str
    peername: str
    status: str
    error: str = ""
    ipfs_peer_id: str = ""
    ipfs_peer_addresses: tuple[str, ...] = ()
    attempt_count: int = 0


@dataclass(frozen=True)
class GlobalPinInfo:
    cid: str
    name: str
    peer_map: dict[str, PeerStatus] = field(default_factory=dict)
    allocations: tuple[str, ...] = ()
    origins: tuple[str, ...] = ()

    def pinned_on(self) -> int:
        """Cluster peers whose IPFS daemon holds it pinned."""
        return sum(1 for p in self.peer_map.values() if p.status == "pinned")

    def holders(self) -> list[str]:
        """IPFS addresses of the peers that hold it (to fetch it back over Bitswap)."""
        return [a for p in self.peer_map.values() if p.status == "pinned"
                for a in p.ipfs_peer_addresses]


@dataclass(frozen=True)
class PinOptions:
    replication_min: int | None = None
    replication_max: int | None = None
    name: str | None = None
    mode: str = "recursive"
    metadata: dict[str, str] = field(default_factory=dict)
    origins: tuple[str, ...] = ()
    user_allocations: tuple[str, ...] = ()
    expire_in: str | None = None  # a Go duration, e.g. "24h"

    def query(self) -> list[tuple[str, str]]:
        q: list[tuple[str, str]] = [("mode", self.mode)]
        if self.replication_min is not None:
            q.append(("replication-min", str(self.replication_min)))
        if self.replication_max is not None:
            q.append(("replication-max", str(self.replication_max)))
        if self.name:
            q.append(("name", self.name))
        q += [(f"meta-{k}", v) for k, v in sorted(self.metadata.items())]
        if self.origins:
            q.append(("origins", ",".join(self.origins)))
        if self.user_allocations:
            q.append(("user-allocations", ",".join(self.user_allocations)))
        if self.expire_in:
            q.append(("expire-in", self.expire_in))
        return q


class ClusterClient(HttpService):
    service = "IPFS Cluster"

    async def id(self) -> dict[str, Any]:
        doc = await self.json("GET", "/id")
        self.expect(doc, "id", "/id")
        return dict(doc)

    async def version(self) -> str:
        return str(self.expect(await self.json("GET", "/version"), "version", "/version"))

    async def token(self) -> str:
        """A JWT for bearer auth (the client must hold basic credentials for this call)."""
        return str(self.expect(await self.json("POST", "/token"), "token", "/token"))

    async def peers(self) -> AsyncIterator[dict[str, Any]]:
        async for doc in self.json_lines("GET", "/peers"):
            yield self.expect_map(doc, "/peers")

    async def pin(self, cid: str, options: PinOptions | None = None) -> dict[str, Any]:
        """The Pin as Cluster recorded it (allocations chosen, options applied)."""
        doc = await self.json("POST", f"/pins/{cid}", params=(options or PinOptions()).query())
        self.expect(doc, "cid", "/pins")
        return dict(doc)

    async def unpin(self, cid: str) -> dict[str, Any]:
        doc = await self.json("DELETE", f"/pins/{cid}")
        self.expect(doc, "cid", "/pins")
        return dict(doc)

    async def status(self, cid: str, *, local: bool = False) -> GlobalPinInfo:
        doc = await self.json("GET", f"/pins/{cid}", params={"local": str(local).lower()})
        return self._global(doc, f"/pins/{cid}")

    async def pins(self, *, filter: str | None = None, local: bool = False,
                   cids: list[str] | None = None) -> AsyncIterator[GlobalPinInfo]:
        """Every pin's status (204 when there are none)."""
        if filter is not None and not set(filter.split(",")) <= STATUS_FILTERS:
            raise ValueError(f"unknown status filter {filter!r} "
                             f"(known: {', '.join(sorted(STATUS_FILTERS))})")
        params = {"local": str(local).lower()}
        if filter:
            params["filter"] = filter
        if cids:
            params["cids"] = ",".join(cids)
        async for doc in self.json_lines("GET", "/pins", params=params):
            yield self._global(doc, "/pins")

    async def allocations(self, filter: str = "pin") -> AsyncIterator[dict[str, Any]]:
        async for doc in self.json_lines("GET", "/allocations", params={"filter": filter}):
            yield self.expect_map(doc, "/allocations")

    async def allocation(self, cid: str) -> dict[str, Any]:
        doc = await self.json("GET", f"/allocations/{cid}")
        self.expect(doc, "cid", "/allocations")
        return dict(doc)

    async def recover(self, cid: str) -> GlobalPinInfo:
        return self._global(await self.json("POST", f"/pins/{cid}/recover"), "/recover")

    def expect_map(self, doc: Any, path: str) -> dict[str, Any]:
        if not isinstance(doc, dict):
            self.expect(doc, "id", path)  # raises, naming what came instead
        return dict(doc)

    def _global(self, doc: Any, path: str) -> GlobalPinInfo:
        cid = self.expect(doc, "cid", path)
        peer_map = self.expect(doc, "peer_map", path) or {}
        if not isinstance(peer_map, dict):
            self.expect({}, "peer_map", path)
        peers = {}
        for peer, info in peer_map.items():
            status = self.expect(info, "status", path)
            peers[peer] = PeerStatus(
                peer, str(info.get("peername", "")), str(status), str(info.get("error", "")),
                str(info.get("ipfs_peer_id", "")),
                tuple(str(a) for a in info.get("ipfs_peer_addresses") or ()),
                int(info.get("attempt_count", 0)))
        return GlobalPinInfo(str(cid), str(doc.get("name", "")), peers,
                             tuple(doc.get("allocations") or ()), tuple(doc.get("origins") or ()))
