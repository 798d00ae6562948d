"""`pubsub pub|sub|ls|peers` over the control API, shaped like Kubo's (messages as JSON lines,
data in multibase base64url as Kubo 0.12+ sends it). Over the TCP RPC topics are multibase
too, both ways, and the message may come as a multipart file (Kubo's clients); the unix
socket keeps our CLI's plain topics and raw body."""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import AsyncIterator

from ...errors import ApiError
from ...protocols.pubsub.service import MAX_MESSAGE_BYTES, PubsubService
from ..router import Request, Response, Router
from ..rpc.multipart import body_data


def _b64(data: bytes) -> str:
    return "u" + base64.urlsafe_b64encode(data).decode().rstrip("=")


def _topic(request: Request, text: str) -> str:
    """A topic argument: multibase (``u`` + base64url, as Kubo 0.11+) over the RPC."""
    if not request.kubo:
        return text
    try:
        from multiformats import multibase

        return bytes(multibase.decode(text)).decode("utf-8")
    except Exception:
        raise ApiError(f"topic {text[:100]!r} is not multibase-encoded (Kubo's RPC takes "
                       "'u' + base64url of the topic)", 400) from None


def _show(request: Request, topic: str) -> str:
    return _b64(topic.encode()) if request.kubo else topic


def register_pubsub_routes(router: Router, pubsub: PubsubService) -> None:
    topics: Counter[str] = Counter()  # open `sub` requests per topic

    async def pub(request: Request) -> Response:
        topic = _topic(request, request.require("arg"))
        data = body_data(request.body, request.header("content-type")) if request.kubo \
            else request.body
        if len(data) > MAX_MESSAGE_BYTES:
            raise ApiError(f"message over {MAX_MESSAGE_BYTES} bytes", 413)
        await pubsub.publish(topic, data)
        return Response.json({})

    async def sub(request: Request) -> Response:
        topic = _topic(request, request.require("arg"))

        async def lines() -> AsyncIterator[bytes]:
            # `ls` lists the topic only once the subscription is registered: a client that
            # publishes as soon as it is listed must get its message back.
            listed = False

            def subscribed() -> None:
                nonlocal listed
                topics[topic] += 1
                listed = True

            try:
                async for message in pubsub.subscribe(topic, on_subscribed=subscribed):
                    yield json.dumps({
                        "from": str(message.sender), "data": _b64(message.data),
                        "seqno": _b64(message.seqno), "topicIDs": [_b64(topic.encode())],
                    }).encode() + b"\n"
            finally:
                if listed:
                    topics[topic] -= 1
                    if topics[topic] <= 0:
                        del topics[topic]

        return Response(body=lines(), content_type="application/x-ndjson")

    async def ls(request: Request) -> Response:
        return Response.json({"Strings": sorted(_show(request, t) for t in topics)})

    async def peers(request: Request) -> Response:
        topic = request.arg("arg")
        found = pubsub.topic_peers(_topic(request, topic)) if topic else []
        return Response.json({"Strings": sorted(str(p) for p in found)})

    router.add("POST", "/api/v0/pubsub/pub", pub)
    router.add("POST", "/api/v0/pubsub/sub", sub)
    router.add("POST", "/api/v0/pubsub/ls", ls)
    router.add("POST", "/api/v0/pubsub/peers", peers)
