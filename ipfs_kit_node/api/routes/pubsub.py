"""`pubsub pub|sub|ls|peers` over the control API, shaped like Kubo's (messages as JSON lines,
data in multibase base64url as Kubo 0.12+ sends it)."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

from ...errors import ApiError
from ...protocols.pubsub.service import MAX_MESSAGE_BYTES, PubsubService
from ..server import Request, Response, Router


def _b64(data: bytes) -> str:
    return "u" + base64.urlsafe_b64encode(data).decode().rstrip("=")


def register_pubsub_routes(router: Router, pubsub: PubsubService) -> None:
    topics: set[str] = set()

    async def pub(request: Request) -> Response:
        topic = request.require("arg")
        if len(request.body) > MAX_MESSAGE_BYTES:
            raise ApiError(f"message over {MAX_MESSAGE_BYTES} bytes", 413)
        await pubsub.publish(topic, request.body)
        return Response.json({})

    async def sub(request: Request) -> Response:
        topic = request.require("arg")

        async def lines() -> AsyncIterator[bytes]:
            topics.add(topic)
            try:
                async for message in pubsub.subscribe(topic):
                    yield json.dumps({
                        "from": str(message.sender), "data": _b64(message.data),
                        "seqno": _b64(message.seqno), "topicIDs": [_b64(topic.encode())],
                    }).encode() + b"\n"
            finally:
                topics.discard(topic)

        return Response(body=lines(), content_type="application/x-ndjson")

    async def ls(request: Request) -> Response:
        return Response.json({"Strings": sorted(topics)})

    async def peers(request: Request) -> Response:
        topic = request.arg("arg")
        found = pubsub.topic_peers(topic) if topic else []
        return Response.json({"Strings": sorted(str(p) for p in found)})

    router.add("POST", "/api/v0/pubsub/pub", pub)
    router.add("POST", "/api/v0/pubsub/sub", sub)
    router.add("POST", "/api/v0/pubsub/ls", ls)
    router.add("POST", "/api/v0/pubsub/peers", peers)
