"""`pin … --remote`, `pin remote ls|pins` and `pin status`: the pinning service over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from ...errors import ApiError, IpfsKitError, PinningError
from ...pinning.service import PinningService
from ..router import Request, Response, Router


def _target(request: Request) -> str:
    target = request.require("remote")
    if target not in ("kubo", "cluster"):
        raise ApiError(f"--remote must be kubo or cluster, got {target!r}", 400)
    return target


def register_remote_pin_routes(router: Router, pins: PinningService) -> None:
    async def add(request: Request) -> Response:
        cid = str(request.cid())
        intent = await pins.queue.enqueue("pin", cid, _target(request),
                                          request.arg("name") or "")
        return Response.json(intent.as_json())

    async def rm(request: Request) -> Response:
        cid = str(request.cid())
        intent = await pins.queue.enqueue("unpin", cid, _target(request))
        return Response.json(intent.as_json())

    async def queue_ls(request: Request) -> Response:
        intents = list(pins.queue.intents.values()) if request.flag("all") \
            else pins.queue.pending()
        return Response.json({"Intents": [i.as_json() for i in
                                          sorted(intents, key=lambda i: i.at)]})

    async def status(request: Request) -> Response:
        cid = str(request.cid())
        remote: dict[str, Any] = {}
        for name, target in sorted(pins.targets.items()):
            try:
                remote[name] = {"Pinned": await target.is_pinned(cid)}
            except IpfsKitError as exc:
                remote[name] = {"Error": str(exc)}
        return Response.json({"Cid": cid, "Intents": [
            i.as_json() for i in pins.queue.status(cid)], "Remote": remote})

    async def remote_pins(request: Request) -> Response:
        """What the remote holds, streamed as JSON lines."""
        target = _target(request)
        if target not in pins.targets:
            raise PinningError(f"no {target} is configured; set [pinning] {target}_api")
        lines = pins.kubo_pins() if target == "kubo" else pins.cluster_pins()
        first = await anext(lines, None)  # errors before the first line get a status

        async def body() -> AsyncIterator[bytes]:
            if first is not None:
                yield first
            async for line in lines:
                yield line

        return Response(body=body(), content_type="application/x-ndjson")

    router.add("POST", "/api/v0/pin/remote/add", add)
    router.add("POST", "/api/v0/pin/remote/rm", rm)
    router.add("POST", "/api/v0/pin/remote/ls", queue_ls)
    router.add("POST", "/api/v0/pin/remote/status", status)
    router.add("POST", "/api/v0/pin/remote/pins", remote_pins)
