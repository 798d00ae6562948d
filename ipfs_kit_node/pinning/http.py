"""An httpx transport on h11 and trio sockets that keeps HTTP trailers.

Kubo and IPFS Cluster report an error that happens mid-stream in a trailer (``X-Stream-Error``)
after a 200 and part of the body; httpcore drops trailers, so a failed listing would look
complete. This transport hands them over in ``response.extensions["trailers"]`` (filled when
the body has been read to the end). One connection per request: pinning calls are few.

The API address is a multiaddr, as Kubo writes it: ``/ip4/127.0.0.1/tcp/5001``,
``/dns/host/tcp/9094`` or ``/unix/path/to/api.sock``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import h11
import httpx
import trio

from ..endpoints import Endpoint

READ_SIZE = 64 * 1024


class H11Transport(httpx.AsyncBaseTransport):
    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint

    async def _connect(self, timeout: float | None) -> trio.abc.Stream:
        with trio.fail_after(timeout or 1e9):
            if self.endpoint.unix is not None:
                return await trio.open_unix_socket(self.endpoint.unix)
            assert self.endpoint.host is not None and self.endpoint.port is not None
            return await trio.open_tcp_stream(self.endpoint.host, self.endpoint.port)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        try:
            stream = await self._connect(timeouts.get("connect"))
        except (OSError, trio.TooSlowError) as exc:
            raise httpx.ConnectError(f"cannot connect to {self._where()}: {exc}",
                                     request=request) from None
        conn = h11.Connection(h11.CLIENT)
        read_timeout = timeouts.get("read")
        try:
            headers = [(k, v) for k, v in request.headers.raw if k.lower() != b"connection"]
            headers.append((b"Connection", b"close"))
            if not any(k.lower() in (b"content-length", b"transfer-encoding")
                       for k, _ in headers):
                headers.append((b"Content-Length", b"0"))  # httpx sets one when there is a body
            target = request.url.raw_path
            write_timeout = timeouts.get("write") or 1e9
            with trio.fail_after(write_timeout):
                await stream.send_all(conn.send(h11.Request(
                    method=request.method, target=target, headers=headers)))
            async for chunk in request.stream:  # type: ignore[union-attr]
                if chunk:  # streamed up as it comes: an `add` of any size stays in bounds
                    with trio.fail_after(write_timeout):
                        await stream.send_all(conn.send(h11.Data(data=chunk)))
            with trio.fail_after(write_timeout):
                await stream.send_all(conn.send(h11.EndOfMessage()))
            event = await _next_event(conn, stream, read_timeout)
            while isinstance(event, h11.InformationalResponse):
                event = await _next_event(conn, stream, read_timeout)
            if not isinstance(event, h11.Response):
                raise httpx.RemoteProtocolError("no response", request=request)
        except (OSError, trio.BrokenResourceError, h11.RemoteProtocolError) as exc:
            await stream.aclose()
            raise httpx.ReadError(f"{self._where()} broke the connection: {exc}",
                                  request=request) from None
        except trio.TooSlowError:
            await stream.aclose()
            raise httpx.ReadTimeout(f"{self._where()} did not answer in time",
                                    request=request) from None
        except BaseException:
            await stream.aclose()
            raise
        trailers: dict[str, str] = {}
        return httpx.Response(
            status_code=event.status_code, headers=event.headers,
            stream=_Body(conn, stream, read_timeout, trailers, self._where()),
            extensions={"trailers": trailers, "http_version": b"HTTP/1.1"},
        )

    def _where(self) -> str:
        return self.endpoint.unix or f"{self.endpoint.host}:{self.endpoint.port}"


async def _next_event(conn: h11.Connection, stream: trio.abc.Stream,
                      timeout: float | None) -> Any:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        with trio.fail_after(timeout or 1e9):
            data = await stream.receive_some(READ_SIZE)
        conn.receive_data(data)


class _Body(httpx.AsyncByteStream):
    def __init__(self, conn: h11.Connection, stream: trio.abc.Stream, timeout: float | None,
                 trailers: dict[str, str], where: str) -> None:
        self.conn, self.stream, self.timeout = conn, stream, timeout
        self.trailers, self.where = trailers, where

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            while True:
                event = await _next_event(self.conn, self.stream, self.timeout)
                if isinstance(event, h11.Data):
                    yield bytes(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    for name, value in event.headers:
                        self.trailers[name.decode("latin-1").lower()] = value.decode("latin-1")
                    return
                else:  # ConnectionClosed before the end: a truncated body
                    raise httpx.RemoteProtocolError(
                        f"{self.where} closed the connection before the end of the body")
        except h11.RemoteProtocolError as exc:
            raise httpx.RemoteProtocolError(
                f"{self.where} sent a malformed or truncated body: {exc}") from None
        except trio.TooSlowError:
            raise httpx.ReadTimeout(f"{self.where} stopped sending (timed out)") from None
        except (OSError, trio.BrokenResourceError) as exc:
            raise httpx.ReadError(f"{self.where} broke the connection: {exc}") from None

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await self.stream.aclose()
