"""Kubo RPC v0 commands beyond the node's own routes: add, dag, version, swarm extras,
stats/bw, and Kubo's other names for routes registered elsewhere (routing/* = dht/*)."""

from __future__ import annotations

import platform
import sys

import multiaddr
import trio
from libp2p.peer.id import ID

from ... import __version__
from ...components import Components
from ...errors import ApiError
from ...host import peer_addresses
from ..router import Request, Response, Router
from .add import register_add_routes
from .dag import register_dag_routes

#: Kubo's RPC version this surface follows (what `version` reports to clients that check).
KUBO_COMPAT = "0.32.0"
#: Kubo's names for commands registered under other names here.
ALIASES = {
    "/api/v0/routing/provide": "/api/v0/dht/provide",
    "/api/v0/routing/findpeer": "/api/v0/dht/findpeer",
    "/api/v0/dht/findprovs": "/api/v0/routing/findprovs",
}
MAX_PEER_ID_LENGTH = 128


def register_rpc_routes(router: Router, c: Components) -> None:
    register_add_routes(router, c.blocks)
    register_dag_routes(router, c.blocks, c.fetch)
    host = c.host

    async def version(request: Request) -> Response:
        return Response.json({"Version": KUBO_COMPAT, "Commit": f"ipfs-kit-node-{__version__}",
                              "Repo": "16", "System": f"{platform.machine()}/{sys.platform}",
                              "Golang": f"python{platform.python_version()}"})

    async def disconnect(request: Request) -> Response:
        done = []
        for text in request.query.get("arg") or []:
            try:
                peer = ID.from_base58(multiaddr.Multiaddr(text).get_peer_id()
                                      if text.startswith("/") else text[:MAX_PEER_ID_LENGTH])
            except Exception:
                raise ApiError(f"{text[:200]!r} is not a peer multiaddr (/…/p2p/ID)",
                               400) from None
            if peer not in host.get_connected_peers():
                raise ApiError(f"disconnect {peer} failure: not connected", 500)
            with trio.move_on_after(10):
                await host.disconnect(peer)
            done.append(f"disconnect {peer} success")
        if not done:
            raise ApiError("argument 'arg' (a peer multiaddr) is required", 400)
        return Response.json({"Strings": done})

    async def addrs(request: Request) -> Response:
        store = host.get_peerstore()
        return Response.json({"Addrs": {str(p): sorted(str(a) for a in store.addrs(p))
                                        for p in host.get_connected_peers()}})

    async def addrs_local(request: Request) -> Response:
        return Response.json({"Strings": peer_addresses(host)})

    async def bw(request: Request) -> Response:
        """Bitswap payload bytes (py-libp2p counts no transport bytes); rates are averages
        since start."""
        stat = c.fetch.stat()
        up = max(c.metrics.uptime(), 1e-9)
        received, sent = int(stat["DataReceived"]), int(stat["DataSent"])  # type: ignore[call-overload]
        return Response.json({"TotalIn": received, "TotalOut": sent,
                              "RateIn": received / up, "RateOut": sent / up})

    router.add("POST", "/api/v0/version", version)
    router.add("POST", "/api/v0/swarm/disconnect", disconnect)
    router.add("POST", "/api/v0/swarm/addrs", addrs)
    router.add("POST", "/api/v0/swarm/addrs/local", addrs_local)
    router.add("POST", "/api/v0/stats/bw", bw)
    for alias, path in ALIASES.items():
        if router.has(path) and not router.has(alias):
            router.alias(alias, path)
