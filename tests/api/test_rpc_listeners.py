"""The Kubo RPC on TCP: one Router on the unix socket and TCP listeners, Kubo's CSRF rule,
POST only, auth, 404 body, X-Stream-Error trailers, the REPO/api file, metrics."""

from __future__ import annotations

import base64
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import h11
import httpx
import pytest
import trio
from prometheus_client import CollectorRegistry, generate_latest

from ipfs_kit_node.api.metrics import HttpMetrics
from ipfs_kit_node.api.policy import Authorization, RpcPolicy
from ipfs_kit_node.api.router import Request, Response, Router
from ipfs_kit_node.api.server import ApiServer
from ipfs_kit_node.errors import ApiError, ListenError


def make_router() -> Router:
    router = Router()

    async def version(request: Request) -> Response:
        return Response.json({"Version": "test"})

    async def echo(request: Request) -> Response:
        return Response.json({"arg": request.arg(), "origin": request.header("origin")})

    async def breaks(request: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            yield b'{"n":1}\n'
            raise ApiError("the disk caught fire")

        return Response(body=body(), content_type="application/x-ndjson")

    router.add("POST", "/api/v0/version", version)
    router.add("POST", "/api/v0/echo", echo)
    router.add("POST", "/api/v0/breaks", breaks)
    return router


async def start(nursery: trio.Nursery, tmp: Path, policy: RpcPolicy | None = None,
                registry: CollectorRegistry | None = None) -> ApiServer:
    server = ApiServer(tmp / "api.sock", make_router(),
                       listen=["/ip4/127.0.0.1/tcp/0", "/ip6/::1/tcp/0"], policy=policy,
                       api_file=tmp / "api",
                       metrics=HttpMetrics.of(registry) if registry else None)
    await nursery.start(server.run)
    return server


async def test_one_router_on_socket_and_tcp(short_tmp: Path) -> None:
    registry = CollectorRegistry()
    async with trio.open_nursery() as nursery:
        server = await start(nursery, short_tmp, registry=registry)
        assert len(server.addresses) == 2 and not server.addresses[0].endswith("/tcp/0")
        assert (short_tmp / "api").read_text() == server.addresses[0]  # as Kubo's $IPFS_PATH/api
        async with httpx.AsyncClient(base_url=server.urls[0]) as client:
            r = await client.post("/api/v0/echo", params={"arg": "x"})
            assert r.json() == {"arg": "x", "origin": None}
            # Kubo's bodies for what the RPC refuses
            r = await client.post("/api/v0/nope")
            assert (r.status_code, r.text) == (404, "404 page not found\n")
            r = await client.get("/api/v0/echo")
            assert (r.status_code, r.text) == (405, "405 - Method Not Allowed\n")
            r = await client.post("/api/v0/echo", headers={"Origin": "https://evil.example"})
            assert (r.status_code, r.text) == (403, "403 - Forbidden\n")
            r = await client.post("/api/v0/echo", headers={"Referer": "https://evil.example/x"})
            assert r.status_code == 403
            r = await client.post("/api/v0/echo", headers={"Referer": "http://[::1"})
            assert (r.status_code, r.text) == (403, "403 - Forbidden\n")  # not a 500
            # the server's own origin is allowed, as Kubo allows its webui
            own = server.urls[0]
            r = await client.post("/api/v0/echo", headers={"Origin": own})
            assert r.status_code == 200 and r.json()["origin"] == own
        async with httpx.AsyncClient(base_url=server.urls[1]) as client:  # IPv6
            assert (await client.post("/api/v0/version")).json() == {"Version": "test"}
        # the unix socket keeps our CLI's rules (JSON errors)
        transport = httpx.AsyncHTTPTransport(uds=str(short_tmp / "api.sock"))
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
            r = await client.post("/api/v0/nope")
            assert r.status_code == 404 and r.json()["Type"] == "error"
        nursery.cancel_scope.cancel()
    assert not (short_tmp / "api").exists()
    text = generate_latest(registry).decode()
    assert 'ipfs_kit_http_requests_total{route="/api/v0/echo",server="api",status="403"} 3.0' \
        in text
    assert 'route="other",server="api",status="404"' in text
    assert "ipfs_kit_http_request_seconds_bucket" in text


async def test_allowed_origins_and_auth(short_tmp: Path) -> None:
    policy = RpcPolicy(["https://app.example"], [
        Authorization("alice", "Bearer s3cret"),
        Authorization("bob", "Basic " + base64.b64encode(b"bob:pw").decode(),
                      ("/api/v0/pin",)),
    ])
    async with trio.open_nursery() as nursery:
        server = await start(nursery, short_tmp, policy)
        async with httpx.AsyncClient(base_url=server.urls[0]) as client:
            r = await client.post("/api/v0/echo")
            assert r.status_code == 403 and "Access Denied" in r.text
            r = await client.post("/api/v0/echo", headers={"Authorization": "Bearer wrong"})
            assert r.status_code == 403
            r = await client.post("/api/v0/echo", headers={"Authorization": "Bearer s3cret",
                                                           "Origin": "https://app.example"})
            assert r.status_code == 200
            r = await client.post("/api/v0/echo", auth=("bob", "pw"))  # outside his paths
            assert r.status_code == 403
            r = await client.post("/api/v0/version", auth=("bob", "pw"))
            assert r.status_code == 200  # Kubo: any valid token reaches version
            assert (await client.post("/api/v0/version")).status_code == 403  # none does not
        nursery.cancel_scope.cancel()


async def test_stream_error_comes_as_kubo_trailer(short_tmp: Path) -> None:
    async with trio.open_nursery() as nursery:
        server = await start(nursery, short_tmp)
        port = int(server.addresses[0].rsplit("/", 1)[1])
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        client = h11.Connection(h11.CLIENT)
        await stream.send_all(client.send(h11.Request(
            method="POST", target="/api/v0/breaks",
            headers=[("host", "x"), ("content-length", "0")])) + client.send(h11.EndOfMessage()))
        events: list[object] = []
        with trio.fail_after(10):
            while not events or not isinstance(events[-1], h11.EndOfMessage):
                event = client.next_event()
                if event is h11.NEED_DATA:
                    client.receive_data(await stream.receive_some(65536))
                else:
                    events.append(event)
        head, *_, end = events
        assert isinstance(head, h11.Response) and head.status_code == 200
        assert (b"trailer", b"X-Stream-Error") in list(head.headers)
        assert isinstance(end, h11.EndOfMessage)
        assert list(end.headers) == [(b"x-stream-error", b"the disk caught fire")]
        await stream.aclose()
        nursery.cancel_scope.cancel()


async def test_taken_port_names_address_and_key(short_tmp: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        addr = f"/ip4/127.0.0.1/tcp/{taken.getsockname()[1]}"
        server = ApiServer(None, make_router(), listen=[addr])
        with pytest.raises(ListenError) as info:
            await server.run()
        assert str(info.value) == (f"cannot listen on {addr}: Address already in use; free it "
                                   "or change [api] listen")
