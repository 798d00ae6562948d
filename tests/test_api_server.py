"""The control API server on a real unix socket: routing, errors, limits, streaming."""

from __future__ import annotations

import json
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import trio

from ipfs_kit_node.api.limits import MAX_BODY_BYTES
from ipfs_kit_node.api.router import Request, Response, Router
from ipfs_kit_node.api.server import ApiServer
from ipfs_kit_node.errors import ApiError


def make_router() -> Router:
    router = Router()

    async def echo(request: Request) -> Response:
        return Response.json({"arg": request.query.get("arg", []), "body": len(request.body)})

    async def fails(request: Request) -> Response:
        raise ApiError("you did it wrong", status=400)

    async def stream(request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(3):
                yield f"chunk{i}\n".encode()

        return Response(body=chunks(), content_type="text/plain")

    router.add("POST", "/api/v0/echo", echo)
    router.add("POST", "/api/v0/fails", fails)
    router.add("POST", "/api/v0/stream", stream)
    return router


async def raw_exchange(path: Path, data: bytes) -> bytes:
    stream = await trio.open_unix_socket(str(path))
    async with stream:
        await stream.send_all(data)
        out = b""
        with trio.move_on_after(5):
            while chunk := await stream.receive_some(65536):
                out += chunk
        return out


async def serve(short_tmp: Path, nursery: trio.Nursery) -> Path:
    path = short_tmp / "api.sock"
    path.write_text("stale")  # a socket file left by a dead daemon is replaced
    await nursery.start(ApiServer(path, make_router()).run)
    return path


async def test_routes_keepalive_and_errors(short_tmp: Path) -> None:
    async with trio.open_nursery() as nursery:
        path = await serve(short_tmp, nursery)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        two = (b"POST /api/v0/echo?arg=a&arg=b HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc"
               b"POST /api/v0/fails HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        out = await raw_exchange(path, two)
        first, second = out.split(b"HTTP/1.1 ")[1:]
        assert first.startswith(b"200")
        assert json.loads(first.split(b"\r\n\r\n", 1)[1]) == {"arg": ["a", "b"], "body": 3}
        assert second.startswith(b"400")
        assert json.loads(second.split(b"\r\n\r\n", 1)[1]) == {
            "Message": "you did it wrong", "Code": 1, "Type": "error"}

        out = await raw_exchange(path, b"POST /api/v0/nope HTTP/1.1\r\nhost: x\r\n"
                                       b"connection: close\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 404") and b"no such command" in out
        out = await raw_exchange(path, b"GET /api/v0/echo HTTP/1.1\r\nhost: x\r\n"
                                       b"connection: close\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 405") and b"use POST" in out
        nursery.cancel_scope.cancel()
    assert not path.exists()


async def test_malformed_and_oversized_requests(short_tmp: Path) -> None:
    async with trio.open_nursery() as nursery:
        path = await serve(short_tmp, nursery)
        out = await raw_exchange(path, b"this is not http\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 400")
        out = await raw_exchange(path, b"POST /x HTTP/1.1\r\n" + b"h: " + b"a" * 100_000)
        assert out.startswith(b"HTTP/1.1 4")  # header section too large
        big = MAX_BODY_BYTES + 1
        out = await raw_exchange(
            path, b"POST /api/v0/echo HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n" % big
            + b"x" * big)
        assert out.startswith(b"HTTP/1.1 413")
        # The server still answers afterwards.
        out = await raw_exchange(path, b"POST /api/v0/echo HTTP/1.1\r\nhost: x\r\n"
                                       b"connection: close\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 200")
        nursery.cancel_scope.cancel()


async def test_streamed_response_is_chunked(short_tmp: Path) -> None:
    async with trio.open_nursery() as nursery:
        path = await serve(short_tmp, nursery)
        out = await raw_exchange(path, b"POST /api/v0/stream HTTP/1.1\r\nhost: x\r\n"
                                       b"connection: close\r\n\r\n")
        head, body = out.split(b"\r\n\r\n", 1)
        assert b"transfer-encoding: chunked" in head.lower()
        assert b"chunk0\n" in body and b"chunk2\n" in body and body.endswith(b"0\r\n\r\n")
        nursery.cancel_scope.cancel()
