"""AsyncClient's HTTP/1.1: h11 over anyio streams, so one code runs under trio and asyncio.

Why not httpx: httpcore drops chunked trailers, and the RPC reports a stream that failed
part-way only in Kubo's ``X-Stream-Error`` trailer; through httpx a broken ``cat`` looked
like a short, complete file. This is the sync client's _http.py, awaited: the same request
heads, error answers and trailer check, kept-alive connections pooled, every network step
bounded by the client's timeout.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Any, cast

import anyio
import anyio.abc
import h11

from ..errors import ApiError, ApiTimeoutError, DaemonNotRunningError
from ._http import CONNECT_TIMEOUT, CONTINUE_WAIT, READ_SIZE, ConnectionClosedError, NoContinueError
from ._wire import Endpoint, error_of, request_headers

AsyncBody = bytes | Iterable[bytes] | AsyncIterable[bytes] | None


class AsyncConnection:
    """One kept-alive HTTP/1.1 connection; a Response is read fully or the connection closed
    before the next request."""

    def __init__(self, endpoint: Endpoint, stream: anyio.abc.ByteStream, timeout: float
                 ) -> None:
        self.endpoint = endpoint
        self.stream = stream
        self.timeout = timeout
        self.h11 = h11.Connection(h11.CLIENT)
        self.used = False

    @classmethod
    async def open(cls, endpoint: Endpoint, timeout: float) -> AsyncConnection:
        stream: anyio.abc.ByteStream
        try:
            with anyio.fail_after(min(timeout, CONNECT_TIMEOUT)):
                if endpoint.unix is not None:
                    stream = await anyio.connect_unix(endpoint.unix)
                elif endpoint.tls:
                    stream = await anyio.connect_tcp(
                        endpoint.host, endpoint.port, ssl_context=ssl.create_default_context(),
                        tls_standard_compatible=False)
                else:
                    stream = await anyio.connect_tcp(endpoint.host, endpoint.port)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            detail = f"no API socket at {endpoint.unix}" \
                if isinstance(exc, FileNotFoundError) \
                else f"{endpoint.describe()} refused the connection"
            raise DaemonNotRunningError(endpoint.repo or "?", detail) from None
        except TimeoutError:
            raise DaemonNotRunningError(endpoint.repo or "?", f"{endpoint.describe()} did not "
                                        f"accept a connection in {CONNECT_TIMEOUT:g} s") from None
        except OSError as exc:
            raise DaemonNotRunningError(endpoint.repo or "?",
                                        f"cannot reach {endpoint.describe()}: {exc}") from None
        return cls(endpoint, stream, timeout)

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
            await self.stream.aclose()

    async def request(self, method: str, target: str, body: AsyncBody,
                      headers: list[tuple[str, str]] | None = None) -> AsyncResponse:
        hdrs, whole = request_headers(self.endpoint, body, headers)
        head = h11.Request(method=method, target=target, headers=hdrs)
        try:
            await self._send(head)
            if whole:
                await self._send(h11.Data(data=whole))
            elif body is not None and whole is None:
                if isinstance(body, AsyncIterable):
                    async for chunk in body:
                        if chunk:
                            await self._send(h11.Data(data=chunk))
                else:
                    for chunk in cast("Iterable[bytes]", body):
                        if chunk:
                            await self._send(h11.Data(data=chunk))
            await self._send(h11.EndOfMessage())
        except (anyio.BrokenResourceError, BrokenPipeError, ConnectionResetError):
            pass  # the daemon answered early (an error) or closed: see what it sent below
        event = await self._next()
        while not isinstance(event, h11.Response):
            if isinstance(event, h11.ConnectionClosed):
                raise ConnectionClosedError("the daemon closed the connection without "
                                            "answering")
            event = await self._next()
        return AsyncResponse(self, event.status_code, list(event.headers))

    async def request_fd(self, method: str, target: str, fd: int) -> AsyncResponse:
        """As ``Connection.request_fd``: a one-byte body carrying an open file descriptor,
        sent only after the daemon's 100 Continue (an earlier byte would be read without
        its descriptor). An answer that comes instead is returned (the connection is then
        not reused); no 100 in ``CONTINUE_WAIT`` s is a NoContinueError (an older daemon
        waiting for a body)."""
        if not isinstance(self.stream, anyio.abc.UNIXSocketStream):
            raise ApiError("a file descriptor can only go over the daemon's unix socket")
        hdrs, _ = request_headers(self.endpoint, b"\0", [("Expect", "100-continue")])
        with contextlib.suppress(anyio.BrokenResourceError, BrokenPipeError,
                                 ConnectionResetError):  # (seen below)
            await self._send(h11.Request(method=method, target=target, headers=hdrs))
        try:
            with anyio.fail_after(min(self.timeout, CONTINUE_WAIT)):
                while not isinstance(event := await self._next(), h11.InformationalResponse):
                    if isinstance(event, h11.Response):  # answered without the body
                        return AsyncResponse(self, event.status_code, list(event.headers))
                    if isinstance(event, h11.ConnectionClosed):
                        raise ConnectionClosedError("the daemon closed the connection "
                                                    "without answering")
        except TimeoutError:
            raise NoContinueError(f"the daemon sent no 100 Continue in {CONTINUE_WAIT:g} s "
                                  "(a daemon without this route waits for a body)") from None
        try:
            with anyio.fail_after(self.timeout):
                await self.stream.send_fds(b"\0", [fd])
        except TimeoutError:
            raise ApiTimeoutError(f"the daemon stopped reading our request for "
                                  f"{self.timeout:g} s") from None
        except (anyio.BrokenResourceError, OSError) as exc:
            raise ConnectionClosedError(f"the connection to the daemon broke: {exc}") from None
        self.h11.send(h11.Data(data=b"\0"))  # sent above, with its descriptor
        self.h11.send(h11.EndOfMessage())
        try:
            while not isinstance(event := await self._next(), h11.Response):
                if isinstance(event, h11.ConnectionClosed):
                    raise ConnectionClosedError("")
        except ConnectionClosedError:  # closed or reset: not retried, it may have the file
            raise ApiError("the daemon closed the connection without answering, after "
                           "taking the file; see its log") from None
        return AsyncResponse(self, event.status_code, list(event.headers))

    async def _send(self, event: Any) -> None:
        data = self.h11.send(event)
        if data:
            try:
                with anyio.fail_after(self.timeout):
                    await self.stream.send(data)
            except TimeoutError:
                raise ApiTimeoutError(f"the daemon stopped reading our request for "
                                      f"{self.timeout:g} s") from None

    async def _next(self) -> Any:
        while True:
            state = self.h11.their_state
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as exc:
                if state is h11.SEND_BODY:  # closed part-way through a body
                    raise ApiError("the stream from the daemon broke off before its end; see "
                                   "the daemon's log for the cause") from None
                raise ApiError(f"the daemon's answer is malformed: {exc}") from None
            if event is not h11.NEED_DATA:
                return event
            try:
                with anyio.fail_after(self.timeout):
                    data = await self.stream.receive(READ_SIZE)
            except TimeoutError:
                raise ApiTimeoutError(f"the daemon did not answer in {self.timeout:g} s "
                                      "(pass a longer timeout)") from None
            except anyio.EndOfStream:
                data = b""
            except (anyio.BrokenResourceError, OSError) as exc:
                raise ConnectionClosedError(f"the connection to the daemon broke: {exc}"
                                            ) from None
            self.h11.receive_data(data)

    def reusable(self) -> bool:
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
            return True
        return False


class AsyncResponse:
    """A response read as it arrives; a failed stream (the trailer, or a cut connection)
    raises ApiError with the daemon's message."""

    def __init__(self, conn: AsyncConnection, status: int,
                 headers: list[tuple[bytes, bytes]]) -> None:
        self.conn = conn
        self.status = status
        self.headers = {k.decode().lower(): v.decode("latin-1") for k, v in headers}
        self.done = False

    async def iter_raw(self) -> AsyncIterator[bytes]:
        while not self.done:
            event = await self.conn._next()
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self.done = True
                for name, value in event.headers:
                    if name.lower() == b"x-stream-error" and value:
                        raise ApiError(value.decode("latin-1"))
            elif isinstance(event, h11.ConnectionClosed):
                raise ApiError("the stream from the daemon broke off before its end; see "
                               "the daemon's log for the cause")

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.iter_raw()])

    async def raise_for_status(self) -> None:
        if self.status >= 400:
            raise error_of(self.status, await self.read())


class AsyncPool:
    """Idle kept-alive connections of one AsyncClient (one event loop: no lock needed)."""

    def __init__(self, endpoint: Endpoint, timeout: float, size: int = 16) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.size = size
        self._idle: list[AsyncConnection] = []

    async def take(self, timeout: float | None = None) -> AsyncConnection:
        wanted = self.timeout if timeout is None else timeout
        if self._idle:
            conn = self._idle.pop()
            conn.timeout = wanted
            return conn
        return await AsyncConnection.open(self.endpoint, wanted)

    async def give(self, conn: AsyncConnection) -> None:
        if conn.reusable() and len(self._idle) < self.size:
            self._idle.append(conn)
            return
        await conn.aclose()

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.aclose()
