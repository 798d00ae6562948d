"""UnixFS over the control API: cat (streamed), ls and stat, read through a Blocks getter."""

from __future__ import annotations

from collections.abc import AsyncIterator

from ..api.server import Request, Response, Router
from .exporter import BlockGetter, cat, ls, resolve


def register_unixfs_routes(router: Router, blocks: BlockGetter) -> None:
    async def cat_(request: Request) -> Response:
        stream = cat(blocks, request.cid())
        try:
            first = await anext(stream)  # errors before the first byte get a proper status
        except StopAsyncIteration:
            return Response(body=b"", content_type="application/octet-stream")

        async def body() -> AsyncIterator[bytes]:
            yield first
            async for chunk in stream:
                yield chunk

        return Response(body=body(), content_type="application/octet-stream")

    async def ls_(request: Request) -> Response:
        cid = request.cid()
        links = []
        async for entry in ls(blocks, cid):
            child = await resolve(blocks, entry.cid)
            links.append({"Name": entry.name, "Hash": str(entry.cid), "Size": child.size,
                          "Type": 1 if "directory" in child.kind else 2})
        return Response.json({"Objects": [{"Hash": str(cid), "Links": links}]})

    async def stat(request: Request) -> Response:
        cid = request.cid()
        node = await resolve(blocks, cid)
        kind = "directory" if "directory" in node.kind else node.kind
        return Response.json({"Hash": str(cid), "Type": kind, "Size": node.size})

    router.add("POST", "/api/v0/cat", cat_)
    router.add("POST", "/api/v0/ls", ls_)
    router.add("POST", "/api/v0/unixfs/stat", stat)

