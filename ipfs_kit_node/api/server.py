"""The control API: HTTP/1.1 (h11, sans-IO) on a unix socket inside the repo.

Routes are registered on a ``Router`` by whichever service owns them, so a later feature adds
an endpoint with one ``router.add(...)`` call. Kubo's conventions: ``POST /api/v0/<command>``,
``arg`` query parameters, JSON bodies, errors as ``{"Message", "Code", "Type": "error"}``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import h11
import trio
from multiformats import CID

from ..cid import to_cid
from ..errors import ApiError, BlockNotFoundError, IpfsKitError
from ..logs import get_logger
from ..service import TaskStatus

log = get_logger(__name__)

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024
READ_SIZE = 64 * 1024
# A kept-alive connection with no request for this long is closed (Go's net/http, which Kubo
# uses, closes idle ones too); a request whose bytes stop arriving for READ_TIMEOUT likewise.
IDLE_TIMEOUT = 120.0
READ_TIMEOUT = 60.0
# A client that stops reading a response for this long is dropped (its handler cancelled).
WRITE_TIMEOUT = 60.0
# Bytes a client may pipeline while its previous request is being answered.
MAX_PIPELINED_BYTES = 64 * 1024


@dataclass(frozen=True)
class Request:
    """A request; ``body`` for ordinary routes, ``chunks`` (read as you go) for streaming ones."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: bytes = b""
    chunks: AsyncIterator[bytes] | None = None

    def arg(self, name: str = "arg", default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def require(self, name: str = "arg") -> str:
        value = self.arg(name)
        if value is None:
            raise ApiError(f"argument {name!r} is required", status=400)
        return value

    def int(self, name: str, default: int, *, minimum: int = 0, maximum: int = 2**31) -> int:
        """An integer argument within bounds; a malformed or out-of-range one is a 400."""
        text = self.arg(name)
        if text is None or text == "":
            return default
        try:
            value = int(text) if len(text) <= 20 else None
        except ValueError:
            value = None
        if value is None or not minimum <= value <= maximum:
            shown = text if len(text) <= 40 else text[:40] + "..."
            raise ApiError(f"argument {name!r} must be an integer from {minimum} to {maximum}, "
                           f"got {shown!r}", status=400)
        return value

    def flag(self, name: str) -> bool:
        return (self.arg(name) or "").lower() in ("1", "true", "yes")

    def cid(self, name: str = "arg") -> CID:
        """A required CID argument (a malformed one is a 400, see status_of)."""
        return to_cid(self.require(name))


@dataclass
class Response:
    status: int = 200
    body: bytes | AsyncIterator[bytes] = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def json(cls, obj: Any, status: int = 200) -> Response:
        return cls(status=status, body=json.dumps(obj).encode() + b"\n")

    @classmethod
    def error(cls, message: str, status: int = 500) -> Response:
        return cls.json({"Message": message, "Code": 0, "Type": "error"}, status=status)


Handler = Callable[[Request], Awaitable[Response]]


def status_of(exc: IpfsKitError) -> int:
    """The one place errors become HTTP statuses: missing 404, the caller's mistake 400."""
    if exc.http_status is not None:
        return exc.http_status
    if isinstance(exc, BlockNotFoundError):
        return 404
    if isinstance(exc, ValueError):  # bad CID, wrong bytes, malformed block, not a file...
        return 400
    return 500


class Router:
    """(method, path) -> handler; the one place routes are looked up."""

    def __init__(self) -> None:
        self._routes: dict[str, dict[str, Handler]] = {}
        self._streaming: set[tuple[str, str]] = set()

    def add(self, method: str, path: str, handler: Handler, *, streaming: bool = False) -> None:
        """Register a handler; ``streaming`` ones read the body from ``request.chunks``."""
        methods = self._routes.setdefault(path, {})
        if method in methods:
            raise ValueError(f"route {method} {path} is registered twice")
        methods[method] = handler
        if streaming:
            self._streaming.add((method, path))

    def is_streaming(self, method: str, path: str) -> bool:
        return (method, path) in self._streaming

    async def dispatch(self, request: Request) -> Response:
        methods = self._routes.get(request.path)
        if methods is None:
            return Response.error(f"{request.path}: no such command", status=404)
        handler = methods.get(request.method)
        if handler is None:
            allowed = ", ".join(sorted(methods))
            return Response.error(f"{request.method} not allowed here; use {allowed}", 405)
        try:
            return await handler(request)
        except ApiError as exc:
            return Response.error(str(exc), exc.status)
        except IpfsKitError as exc:
            return Response.error(str(exc), status_of(exc))
        except h11.RemoteProtocolError as exc:  # a streamed body the client broke off
            return Response.error(f"malformed request body: {exc}", 400)
        except Exception as exc:  # the edge: a bug or an input we did not foresee
            log.error("API handler failed", route=request.path, error=_describe(exc),
                      exc_info=not isinstance(exc, RecursionError))
            return Response.error(f"{request.path}: internal error: {_describe(exc)}", 500)


class ApiServer:
    """Serves a Router on a unix socket (mode 0600) for the node's lifetime."""

    name = "api"

    def __init__(self, socket_path: Path, router: Router) -> None:
        self.socket_path = socket_path
        self.router = router

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        # We hold the repo lock, so a socket file left here belongs to a dead daemon.
        self.socket_path.unlink(missing_ok=True)
        sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            await sock.bind(str(self.socket_path))
        finally:
            os.umask(old_umask)
        sock.listen(128)
        listener = trio.SocketListener(sock)
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(trio.serve_listeners, self._serve_connection, [listener])
                log.info("control API listening", socket=str(self.socket_path))
                task_status.started()
        finally:
            self.socket_path.unlink(missing_ok=True)

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        async with stream:
            conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
            try:
                while await self._serve_one(conn, stream):
                    conn.start_next_cycle()
            except h11.RemoteProtocolError as exc:
                await _send_if_possible(conn, stream, Response.error(f"bad request: {exc}", 400))
            except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError,
                    _ClientGone):
                pass
            except Exception as exc:  # the edge: nothing a connection does stops the server
                log.error("API connection failed", error=_describe(exc), exc_info=True)
                await _send_if_possible(
                    conn, stream, Response.error(f"internal error: {_describe(exc)}", 500))

    async def _serve_one(self, conn: h11.Connection, stream: trio.SocketStream) -> bool:
        with trio.move_on_after(IDLE_TIMEOUT) as idle:  # waiting for a request, headers included
            event = await _next_event(conn, stream, timeout=math.inf)
        if idle.cancelled_caught or isinstance(event, h11.ConnectionClosed):
            return False
        assert isinstance(event, h11.Request)
        target = urlsplit(event.target.decode("latin-1"))
        method = event.method.decode()
        head = method == "HEAD"  # answered with headers only (h11 refuses a body)
        query = parse_qs(target.query, keep_blank_values=True)
        if self.router.is_streaming(method, target.path):
            chunks = _body_chunks(conn, stream)
            try:
                response = await self.router.dispatch(
                    Request(method=method, path=target.path, query=query, chunks=chunks))
                async for _ in chunks:  # whatever the handler left unread
                    pass
            finally:
                await chunks.aclose()
            await _until_client_leaves(conn, stream, _send(conn, stream, response, head))
            return conn.our_state is h11.DONE and conn.their_state is h11.DONE
        body = bytearray()
        while True:
            part = await _next_event(conn, stream)
            if isinstance(part, h11.Data):
                body += part.data
                if len(body) > MAX_BODY_BYTES:
                    await _send(conn, stream, Response.error(
                        f"request body over {MAX_BODY_BYTES} bytes", 413))
                    return False
            elif isinstance(part, h11.EndOfMessage):
                break
            else:
                return False
        request = Request(method=method, path=target.path, query=query, body=bytes(body))

        async def answer() -> None:
            await _send(conn, stream, await self.router.dispatch(request), head)

        await _until_client_leaves(conn, stream, answer())
        return conn.our_state is h11.DONE and conn.their_state is h11.DONE


class _ClientGone(Exception):
    """The client closed its connection while we were still answering."""


async def _until_client_leaves(conn: h11.Connection, stream: trio.SocketStream,
                               work: Awaitable[None]) -> None:
    """Run ``work`` (a handler and its answer); cancel it if the client hangs up meanwhile.

    A client that gives up must not leave its request running (a listing of 88,000 entries
    kept the node busy for minutes after the caller had gone). Bytes the client pipelines
    meanwhile go to h11's buffer for the next cycle.
    """
    gone = False

    async def watch(cancel: trio.CancelScope) -> None:
        nonlocal gone
        buffered = 0
        while buffered <= MAX_PIPELINED_BYTES:
            data = await stream.receive_some(READ_SIZE)
            if not data:
                gone = True
                cancel.cancel()
                return
            buffered += len(data)
            conn.receive_data(data)
        await trio.sleep_forever()  # enough pipelined: stop reading, let TCP push back

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch, nursery.cancel_scope)
            await work
            nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:  # trio groups even a lone error: the edge wants it bare
        raise _sole_error(group) from None
    if gone:
        raise _ClientGone()


def _sole_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first error in ``group`` that is not a cancellation (or the group, if none is)."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            inner = _sole_error(exc)
            if inner is not exc:
                return inner
        elif not isinstance(exc, trio.Cancelled):
            return exc
    return group


async def _body_chunks(conn: h11.Connection, stream: trio.SocketStream
                       ) -> AsyncGenerator[bytes, None]:
    while True:
        event = await _next_event(conn, stream)
        if isinstance(event, h11.Data):
            yield bytes(event.data)
        elif isinstance(event, h11.EndOfMessage):
            return
        else:
            raise h11.RemoteProtocolError("connection closed in the middle of the body")


async def _next_event(conn: h11.Connection, stream: trio.SocketStream,
                      timeout: float = READ_TIMEOUT) -> Any:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        with trio.fail_after(timeout):
            data = await stream.receive_some(READ_SIZE)
        conn.receive_data(data)  # b"" marks end of stream


async def _send(conn: h11.Connection, stream: trio.SocketStream, response: Response,
                head: bool = False) -> None:
    """Send a response; a body that fails part-way aborts the connection.

    An error after the first bytes cannot change the status any more: the connection is closed
    without the final chunk, so every client sees a broken transfer instead of a short body
    that looks complete (the error is logged here).
    """
    headers = [("content-type", response.content_type), *response.headers]
    body = response.body
    if isinstance(body, bytes):
        headers.append(("content-length", str(len(body))))
    else:
        headers.append(("transfer-encoding", "chunked"))
    await _write(stream, conn.send(h11.Response(status_code=response.status, headers=headers)))
    if head:
        aclose = getattr(body, "aclose", None)
        if aclose is not None:
            await aclose()
    elif isinstance(body, bytes):
        if body:
            await _write(stream, conn.send(h11.Data(data=body)))
    else:
        try:
            while True:
                try:
                    chunk = await anext(body)
                except StopAsyncIteration:
                    break
                except Exception as exc:
                    log.warning("response failed mid-stream; connection aborted",
                                error=_describe(exc))
                    raise _ClientGone() from exc  # ends this connection, nothing else
                if chunk:
                    await _write(stream, conn.send(h11.Data(data=chunk)))
        finally:
            aclose = getattr(body, "aclose", None)
            if aclose is not None:
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    await aclose()
    await _write(stream, conn.send(h11.EndOfMessage()))


async def _write(stream: trio.SocketStream, data: bytes) -> None:
    with trio.fail_after(WRITE_TIMEOUT):
        await stream.send_all(data)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    if len(text) > 300:
        text = text[:300] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _send_if_possible(
    conn: h11.Connection, stream: trio.SocketStream, response: Response
) -> None:
    if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
        with contextlib.suppress(
            h11.LocalProtocolError, trio.BrokenResourceError, trio.ClosedResourceError,
            trio.TooSlowError, _ClientGone,
        ):
            await _send(conn, stream, response)
