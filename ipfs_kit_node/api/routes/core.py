"""The node's own routes: id, status, swarm, metrics. Other services add theirs the same way."""

from __future__ import annotations

import base64
from typing import Any

from ...components import Components
from ...host import AGENT_VERSION, peer_addresses
from ...protocols.peers import PeerRecord
from ...swarm import connect
from ..router import Request, Response, Router


def register_core_routes(router: Router, c: Components) -> None:
    host = c.host

    async def id_(request: Request) -> Response:
        """Shaped like Kubo's `ipfs id`."""
        return Response.json({
            "ID": str(host.get_id()),
            "PublicKey": base64.b64encode(host.get_public_key().serialize()).decode(),
            "Addresses": peer_addresses(host),
            "AgentVersion": AGENT_VERSION,
            "Protocols": sorted(str(p) for p in host.get_mux().get_protocols() if p),
        })

    async def status(request: Request) -> Response:
        return Response.json({
            "Role": c.config.role,
            "Cluster": c.config.node.cluster,
            "ID": str(host.get_id()),
            "AgentVersion": AGENT_VERSION,
            "Uptime": round(c.metrics.uptime(), 3),
            "Peers": len(host.get_connected_peers()),
            "Addresses": peer_addresses(host),
            "LongestStallMs": round(c.metrics.loop.longest * 1000, 1),
            "StalledTask": c.metrics.loop.longest_task,
        })

    async def swarm_connect(request: Request) -> Response:
        addrs = request.query.get("arg") or []
        if not addrs:
            return Response.error("argument 'arg' (a peer multiaddr) is required", 400)
        done = []
        for addr in addrs:
            peer_id = await connect(host, c.peers, addr)
            done.append(f"connect {peer_id} success")
        return Response.json({"Strings": done})

    async def swarm_peers(request: Request) -> Response:
        identify = request.flag("identify")
        out = []
        for peer_id in host.get_connected_peers():
            record = c.peers.get(peer_id)
            if record is not None and identify:
                record = await c.peers.wait_identified(peer_id)
            out.append(_peer_json(str(peer_id), record, identify))
        return Response.json({"Peers": out})

    async def metrics(request: Request) -> Response:
        return Response(body=c.metrics.render(),
                        content_type="text/plain; version=0.0.4; charset=utf-8")

    router.add("POST", "/api/v0/id", id_)
    router.add("POST", "/api/v0/status", status)
    router.add("POST", "/api/v0/swarm/connect", swarm_connect)
    router.add("POST", "/api/v0/swarm/peers", swarm_peers)
    router.add("GET", "/metrics", metrics)
    router.add("GET", "/debug/metrics/prometheus", metrics)  # where Kubo serves them


def _peer_json(peer: str, record: PeerRecord | None, identify: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"Peer": peer, "Addr": "", "Direction": "", "FoundBy": ""}
    if record is not None:
        entry.update(Addr=record.address, Direction=record.direction, FoundBy=record.found_by)
        if identify:
            entry["Identify"] = {
                "AgentVersion": record.agent_version or "",
                "ProtocolVersion": record.protocol_version or "",
                "Protocols": sorted(record.protocols),
                "Addresses": list(record.listen_addrs),
            }
    return entry
