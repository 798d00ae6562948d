"""`dht findprovs`, `dht provide`, `dht findpeer` over the control API (Kubo's shapes)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import trio
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo

from ...errors import ApiError
from ...protocols.dht import Dht
from ..router import Request, Response, Router

LOOKUP_TIMEOUT = 30.0
MAX_PEER_ID_LENGTH = 128  # an Ed25519 peer ID is 52 characters, an RSA one 46


PROVIDER_EVENT = 4  # Kubo's routing.QueryEventType for "a provider was found"


def provider_line(info: PeerInfo) -> bytes:
    """One line of Kubo's `routing/findprovs` stream: a provider and its addresses."""
    return json.dumps({"Extra": "", "ID": "", "Type": PROVIDER_EVENT, "Responses": [
        {"ID": str(info.peer_id), "Addrs": [str(a) for a in info.addrs]}]}).encode() + b"\n"


def register_dht_routes(router: Router, dht: Dht) -> None:
    async def findprovs(request: Request) -> Response:
        """Streams one JSON object per line as each provider is found (Kubo's shape); an
        empty body means none within the lookup timeout."""
        cid = request.cid()
        limit = request.int("num-providers", 20, minimum=1, maximum=1000)

        async def lines() -> AsyncIterator[bytes]:
            deadline = trio.current_time() + LOOKUP_TIMEOUT
            found = dht.find_providers(cid, limit=limit)
            try:
                while True:
                    info = None
                    # The deadline wraps each step, never a yield (a generator may be
                    # abandoned by a client that hangs up).
                    with trio.move_on_at(deadline):
                        info = await anext(found, None)
                    if info is None:
                        return
                    yield provider_line(info)
            finally:
                await found.aclose()  # type: ignore[attr-defined]

        return Response(body=lines(), content_type="application/x-ndjson")

    async def provide(request: Request) -> Response:
        cid = request.cid()
        await dht.provide(cid)
        return Response.json({"Provided": str(cid)})

    async def findpeer(request: Request) -> Response:
        text = request.require("arg")
        try:
            if len(text) > MAX_PEER_ID_LENGTH:  # base58 decoding is quadratic: refuse first
                raise ValueError("too long")
            peer_id = ID.from_base58(text)
        except Exception:
            raise ApiError("argument 'arg' must be a peer ID", 400) from None
        with trio.move_on_after(LOOKUP_TIMEOUT):
            info = await dht.find_peer(peer_id)
            if info is not None:
                return Response.json({"ID": str(info.peer_id),
                                      "Addrs": [str(a) for a in info.addrs]})
        raise ApiError(f"peer {peer_id} not found in the DHT", 404)

    router.add("POST", "/api/v0/dht/findprovs", findprovs)
    router.add("POST", "/api/v0/routing/findprovs", findprovs)
    router.add("POST", "/api/v0/dht/provide", provide)
    router.add("POST", "/api/v0/dht/findpeer", findpeer)
