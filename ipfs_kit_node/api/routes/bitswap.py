"""`bitswap stat` and `bitswap wantlist` over the control API."""

from __future__ import annotations

from ...protocols.bitswap import Bitswap
from ..router import Request, Response, Router


def register_bitswap_routes(router: Router, bitswap: Bitswap) -> None:
    async def stat(request: Request) -> Response:
        return Response.json(bitswap.stat())

    async def wantlist(request: Request) -> Response:
        return Response.json({"Keys": bitswap.stat()["Wantlist"]})

    router.add("POST", "/api/v0/bitswap/stat", stat)
    router.add("POST", "/api/v0/bitswap/wantlist", wantlist)
