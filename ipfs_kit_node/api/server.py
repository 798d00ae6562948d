"""HTTP/1.1 servers (h11, sans-IO) for the node: the control API on a unix socket inside the
repo, and the Kubo RPC on TCP multiaddrs, both serving one ``Router``.

``HttpServer`` owns the listeners (unix socket and TCP), the connection loop and the edge
guard; what a listener lets through (Kubo's Origin/CSRF rule, POST only, auth) is a separate
``Policy`` object, so the gateway can reuse the listener code with rules of its own.
Kubo's conventions: ``POST /api/v0/<command>``, ``arg`` query parameters, JSON bodies, errors
as ``{"Message", "Code", "Type": "error"}``.
"""

from __future__ import annotations

import array
import contextlib
import json
import math
import os
import re
import socket
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import h11
import trio
from multiformats import CID

from ..cid import to_cid
from ..errors import ApiError, BlockNotFoundError, IpfsKitError, ListenError
from ..logs import get_logger
from ..service import TaskStatus
from .listen import TcpAddress, bind_tcp
from .metrics import HttpMetrics

log = get_logger(__name__)

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024
READ_SIZE = 64 * 1024
# A streamed request body (an upload of blocks) is read in pieces this big: each piece costs
# a wake-up, an h11 pass and a handler step, and 64 KiB ones cost a 64 MiB add ~0.15 s.
BODY_READ_SIZE = 1024 * 1024
# The kernel's buffer for answers on the unix socket (Linux's default ~208 KiB holds less
# than one 256 KiB block: `cat` waited on the reader for every block; net.core.wmem_max caps
# it).
UNIX_SEND_BUFFER = 4 * 1024 * 1024
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
    headers: tuple[tuple[str, str], ...] = ()  # names lower-cased
    #: Came through a listener speaking Kubo's wire forms (the TCP RPC: multibase pubsub
    #: topics); the unix socket keeps our CLI's plain ones.
    kubo: bool = False
    #: On the unix socket, for a streaming route: the open file descriptors the client sent
    #: as its one-byte body (at most the number given), instead of reading ``chunks``.
    receive_fds: Callable[[int], Awaitable[list[int]]] | None = None

    def header(self, name: str, default: str | None = None) -> str | None:
        """The first value of a request header (``name`` in lower case)."""
        for key, value in self.headers:
            if key == name:
                return value
        return default

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
    body: bytes | AsyncIterator[bytes | memoryview] = b""  # views of blocks: sent, not copied
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def json(cls, obj: Any, status: int = 200) -> Response:
        return cls(status=status, body=json.dumps(obj).encode() + b"\n")

    @classmethod
    def error(cls, message: str, status: int = 500) -> Response:
        """Kubo's error body; ``Code`` as go-ipfs-cmds sets it (1 the client's mistake,
        3 not found, 0 anything else)."""
        code = 1 if status == 400 else 3 if status == 404 else 0
        return cls.json({"Message": message, "Code": code, "Type": "error"}, status=status)

    @classmethod
    def text(cls, text: str, status: int) -> Response:
        """A plain-text answer, as Go's ``http.Error`` writes (Kubo's 403/404/405)."""
        return cls(status=status, body=text.encode() + b"\n",
                   content_type="text/plain; charset=utf-8")


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

    def has(self, path: str) -> bool:
        return path in self._routes

    def alias(self, alias: str, path: str) -> None:
        """Serve ``path``'s handlers under another name too (Kubo's routing/* = dht/*)."""
        for method, handler in self._routes[path].items():
            self.add(method, alias, handler, streaming=self.is_streaming(method, path))

    def route_label(self, method: str, path: str) -> str:
        """The metrics label of a request: its route, or "other" (bounded cardinality)."""
        return path if path in self._routes else "other"

    def answer_now(self, request: Request) -> Response | None:
        """An answer ready without waiting (a kept one), else None for ``dispatch``; the
        server then skips watching for the client leaving, which costs more than such an
        answer (a task and a socket wait per request)."""
        return None

    async def dispatch(self, request: Request) -> Response:
        methods = self._routes.get(request.path)
        if methods is None:
            return Response.error(f"{request.path}: no such command", status=404)
        handler = methods.get(request.method)
        if handler is None:
            allowed = ", ".join(sorted(methods))
            return Response.error(f"{request.method} not allowed here; use {allowed}", 405)
        try:
            try:
                return await handler(request)
            except BaseExceptionGroup as group:  # a handler's nursery groups even one error
                sole = _sole_error(group)
                if sole is group or not isinstance(sole, Exception):
                    raise
                raise sole from None
        except ApiError as exc:
            return Response.error(str(exc), exc.status)
        except IpfsKitError as exc:
            return Response.error(str(exc), status_of(exc))
        except h11.RemoteProtocolError as exc:  # a streamed body the client broke off
            return Response.error(f"malformed request body: {exc}", 400)
        except _BodyTimeout:
            log.warning("request body stalled", route=request.path, timeout_s=READ_TIMEOUT)
            return _body_timeout()
        except Exception as exc:  # the edge: a bug or an input we did not foresee
            log.error("API handler failed", route=request.path, error=_describe(exc),
                      exc_info=not isinstance(exc, RecursionError))
            return Response.error(f"{request.path}: internal error: {_describe(exc)}", 500)


class Policy(Protocol):
    """What one listener lets through, checked before a request reaches the router."""

    #: "trailer": a streamed body that fails sends Kubo's ``X-Stream-Error`` trailer and ends
    #: the chunked body; "abort": the connection is cut without the last chunk.
    stream_errors: str

    def admit(self, request: Request) -> Response | None:
        """None to let the request through, else the answer that refuses it."""

    def not_found(self, request: Request) -> Response:
        """The answer for a path no route serves."""


class SocketPolicy:
    """The unix socket: reachable only by the repo's owner (mode 0600), so no browser rules;
    errors as JSON, and a stream that fails part-way ends with Kubo's ``X-Stream-Error``
    trailer, which both our clients raise with its message (cut, the CLI could only say the
    transfer broke off: an add into a full store did not say so)."""

    stream_errors = "trailer"

    def admit(self, request: Request) -> Response | None:
        return None

    def not_found(self, request: Request) -> Response:
        return Response.error(f"{request.path}: no such command", status=404)


@dataclass(frozen=True)
class Authorization:
    """One ``[api] authorizations`` entry: the ``Authorization`` header it accepts and the path
    prefixes it opens (Kubo's API.Authorizations)."""

    name: str
    header: str
    allowed_paths: tuple[str, ...] = ("/api/v0",)


#: Paths any valid token reaches whatever its allowed paths (Kubo's withAuthSecrets: "version
#: check is implicitly allowed"); without a valid token they are refused like the rest.
OPEN_PATHS = ("/api/v0/version",)
DENIED = ("Kubo RPC Access Denied: Please provide a valid authorization token as defined in "
          "the API.Authorizations configuration.")


class RpcPolicy:
    """Kubo's RPC rules on TCP: a browser request (``Origin`` or ``Referer`` header) only from
    an allowed origin (go-ipfs-cmds' CSRF rule), ``/api/v0`` by POST only, and with
    authorizations configured the ``Authorization`` header must match one of them."""

    stream_errors = "trailer"
    kubo = True

    def __init__(self, allowed_origins: Sequence[str] = (),
                 authorizations: Sequence[Authorization] = ()) -> None:
        self.allowed_origins = set(allowed_origins)
        self.authorizations = {a.header: a for a in authorizations}

    def allow_origin(self, origin: str) -> None:
        """Add an origin (the server adds its own bound addresses, as Kubo does)."""
        self.allowed_origins.add(origin)

    def _origin_ok(self, origin: str) -> bool:
        return "*" in self.allowed_origins or origin in self.allowed_origins

    def admit(self, request: Request) -> Response | None:
        origin = request.header("origin")
        referer = request.header("referer")
        if referer is not None:
            try:
                parts = urlsplit(referer)
                referer = f"{parts.scheme}://{parts.netloc}"
            except ValueError:  # "http://[::1": malformed, so no allowed origin
                referer = "malformed:" + referer[:100]
        if (origin is not None and not self._origin_ok(origin)) or \
                (referer is not None and not self._origin_ok(referer)):
            log.warning("RPC refused a browser request (possible CSRF)", path=request.path,
                        origin=(origin or referer or "")[:200])
            return Response.text("403 - Forbidden", 403)
        if request.method == "OPTIONS":  # a CORS preflight from an allowed origin
            return Response(status=200, content_type="text/plain", headers=self._cors(origin))
        if self.authorizations:
            auth = self.authorizations.get(request.header("authorization") or "")
            if auth is None or (request.path not in OPEN_PATHS and not any(
                    request.path.startswith(p) for p in auth.allowed_paths)):
                return Response.text(DENIED, 403)
        if request.path.startswith("/api/v0/") and request.method != "POST":
            return Response.text("405 - Method Not Allowed", 405)
        return None

    def _cors(self, origin: str | None) -> list[tuple[str, str]]:
        if origin is None:
            return []
        return [("access-control-allow-origin", origin),
                ("access-control-allow-methods", "POST"),
                ("access-control-allow-headers", "Authorization, Content-Type, X-Stream-Output, "
                 "X-Chunked-Output, X-Content-Length"),
                ("access-control-expose-headers", "X-Stream-Output, X-Chunked-Output, "
                 "X-Content-Length")]

    def not_found(self, request: Request) -> Response:
        return Response.text("404 page not found", 404)


class HttpServer:
    """Serves one Router on a unix socket (mode 0600) and/or TCP multiaddrs for the node's
    lifetime, each listener with its own Policy.

    Every listener is bound before ``started()``, so a taken port fails the node's start
    (ListenError: exit 2, naming the address and ``config_key``). ``addresses`` holds the
    bound TCP multiaddrs (port 0 resolved); ``api_file``, when given, gets the first of them
    as Kubo writes ``$IPFS_PATH/api``, and is removed on exit.
    """

    def __init__(self, name: str, router: Router, *, socket_path: Path | None = None,
                 listen: Sequence[str] = (), policy: Policy | None = None,
                 socket_policy: Policy | None = None, api_file: Path | None = None,
                 metrics: HttpMetrics | None = None, config_key: str = "[api] listen") -> None:
        self.name = name
        self.router = router
        self.socket_path = socket_path
        self.listen = [TcpAddress.parse(a) for a in listen]
        self.policy: Policy = policy or RpcPolicy()
        self.socket_policy: Policy = socket_policy or SocketPolicy()
        self.api_file = api_file
        self.metrics = metrics
        self.config_key = config_key
        self.addresses: list[str] = []
        self.urls: list[str] = []

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        listeners: list[tuple[trio.abc.Listener[Any], Policy]] = []
        try:
            if self.socket_path is not None:
                listeners.append((await self._bind_unix(self.socket_path), self.socket_policy))
            for address in self.listen:
                try:
                    tcp = await bind_tcp(address)
                except OSError as exc:
                    raise ListenError(str(address), exc.strerror or str(exc),
                                      key=self.config_key) from None
                bound = address.bound(tcp.socket.getsockname()[1])
                self.addresses.append(str(bound))
                self.urls.append(bound.url)
                add = getattr(self.policy, "allow_origin", None)
                if add is not None:  # Kubo allows its own origin (the webui it serves)
                    for origin in bound.origins():
                        add(origin)
                listeners.append((tcp, self.policy))
            if self.api_file is not None:
                self.api_file.unlink(missing_ok=True)
                if self.addresses:
                    self.api_file.write_text(self.addresses[0])
            async with trio.open_nursery() as nursery:
                for listener, policy in listeners:
                    await nursery.start(trio.serve_listeners,
                                        partial(self._serve_connection, policy=policy),
                                        [listener])
                log.info(f"{self.name} listening", socket=str(self.socket_path or ""),
                         addresses=self.addresses)
                task_status.started()
        finally:
            for listener, _ in listeners:
                with contextlib.suppress(Exception), trio.CancelScope(shield=True):
                    await listener.aclose()
            if self.api_file is not None and self.addresses:
                self.api_file.unlink(missing_ok=True)
            if self.socket_path is not None:
                self.socket_path.unlink(missing_ok=True)

    async def _bind_unix(self, path: Path) -> trio.SocketListener:
        # We hold the repo lock, so a socket file left here belongs to a dead daemon.
        path.unlink(missing_ok=True)
        sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            await sock.bind(str(path))
        finally:
            os.umask(old_umask)
        sock.listen(128)
        return trio.SocketListener(sock)

    async def _serve_connection(self, stream: trio.abc.Stream, *, policy: Policy) -> None:
        async with stream:
            sock = getattr(stream, "socket", None)
            if sock is not None and sock.family == trio.socket.AF_UNIX:
                sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_SNDBUF, UNIX_SEND_BUFFER)
            # The connection of the request being answered (the kept-answer loop makes one a
            # request), for the error answers below.
            conns = [h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)]
            try:
                if type(self.router).answer_now is not Router.answer_now:
                    await self._serve_kept_first(conns, stream, policy)
                else:
                    while await self._serve_one(conns[0], stream, policy, conns):
                        conns[0].start_next_cycle()
            except h11.RemoteProtocolError as exc:
                await _send_if_possible(conns[0], stream,
                                        Response.error(f"bad request: {exc}", 400))
            except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError,
                    _ClientGone, _BodyTimeout):
                pass
            except Exception as exc:  # the edge: nothing a connection does stops the server
                log.error("API connection failed", server=self.name, error=_describe(exc),
                          exc_info=True)
                await _send_if_possible(
                    conns[0], stream, Response.error(f"internal error: {_describe(exc)}", 500))

    async def _serve_kept_first(self, conns: list[h11.Connection], stream: trio.abc.Stream,
                                policy: Policy) -> None:
        """The loop of a router with kept answers (the gateway's): a plain GET or HEAD whose
        answer is ready (``Router.answer_now``) is parsed and answered here, without h11,
        which cost about half of such a request's CPU; anything else (a body, a header this
        parser leaves to h11, HTTP/1.0, a refusal, an answer to work out) goes through h11
        as before, on a new h11 connection handed the bytes read so far."""
        buf = bytearray()
        closed = False
        while True:
            end = _head_end(buf)
            if end == -1 and not closed and len(buf) <= MAX_HEADER_BYTES:
                with trio.move_on_after(IDLE_TIMEOUT) as idle:  # as _serve_one waits
                    while end == -1 and len(buf) <= MAX_HEADER_BYTES:
                        data = await stream.receive_some(READ_SIZE)
                        if not data:
                            closed = True
                            break
                        start = max(0, len(buf) - 2)
                        buf += data
                        end = _head_end(buf, start)
                if idle.cancelled_caught:
                    return
            if closed and not buf:
                return
            # A head over MAX_HEADER_BYTES goes to h11, as in the h11-only loop. h11 refuses an
            # incomplete head over that size but accepts a complete one handed to it at once,
            # so on both paths the real cap is about twice that (one more 64 KiB read).
            if end is not None and 0 <= end <= MAX_HEADER_BYTES and \
                    await self._answer_kept(stream, policy, bytes(buf[:end])):
                del buf[:end + 4]
                continue
            conn = conns[0] = h11.Connection(h11.SERVER,
                                             max_incomplete_event_size=MAX_HEADER_BYTES)
            conn.receive_data(bytes(buf))
            buf.clear()
            if closed:
                conn.receive_data(b"")
            if not await self._serve_one(conn, stream, policy, conns):
                return
            data, closed = conns[0].trailing_data  # what the client pipelined meanwhile
            buf += data

    async def _answer_kept(self, stream: trio.abc.Stream, policy: Policy, head: bytes
                           ) -> bool:
        """Answer a request whose head is ``head`` if it is a plain GET or HEAD with a kept
        answer; False (nothing sent) otherwise."""
        parsed = _simple_head(head)
        if parsed is None:
            return False
        started = time.monotonic()
        method, target_text, headers = parsed
        try:
            target = urlsplit(target_text)
        except ValueError:  # "//[x/...": h11's path answers it (400)
            return False
        request = Request(method=method, path=target.path,
                          query=parse_qs(target.query, keep_blank_values=True),
                          headers=headers, kubo=getattr(policy, "kubo", False))
        if policy.admit(request) is not None or not self.router.has(target.path):
            return False
        response = self.router.answer_now(request)
        if response is None or not isinstance(response.body, bytes):
            return False
        out = _response_head(response)
        if out is None:  # a header value h11 would refuse: let it say so
            return False
        body = b"" if method == "HEAD" else response.body
        await _write(stream, out + body)
        if self.metrics is not None:
            self.metrics.observe(self.name, self.router.route_label(method, target.path),
                                 response.status, len(body), time.monotonic() - started)
        return True

    async def _serve_one(self, conn: h11.Connection, stream: trio.abc.Stream,
                         policy: Policy, conns: list[h11.Connection] | None = None) -> bool:
        """Serve one request; True if the connection can take the next. ``conns[0]`` is
        replaced when a streamed body is read without h11 (``_serve_streaming``)."""
        with trio.move_on_after(IDLE_TIMEOUT) as idle:  # waiting for a request, headers included
            event = await _next_event(conn, stream, timeout=math.inf)
        if idle.cancelled_caught or isinstance(event, h11.ConnectionClosed):
            return False
        assert isinstance(event, h11.Request)
        started = time.monotonic()
        try:
            target = urlsplit(event.target.decode("latin-1"))
        except ValueError as exc:  # "//[x/..." (a bad IPv6 host): the client's mistake
            raise h11.RemoteProtocolError(f"malformed request target: {exc}",
                                          error_status_hint=400) from None
        method = event.method.decode()
        head = method == "HEAD"  # answered with headers only (h11 refuses a body)
        query = parse_qs(target.query, keep_blank_values=True)
        headers = tuple((k.decode("latin-1").lower(), v.decode("latin-1"))
                        for k, v in event.headers)
        sent = _Sent(route=self.router.route_label(method, target.path))
        shell = Request(method=method, path=target.path, query=query, headers=headers,
                        kubo=getattr(policy, "kubo", False))
        refusal = policy.admit(shell)
        if refusal is None and not self.router.has(target.path):
            refusal = policy.not_found(shell)
        try:
            if refusal is not None:
                if conn.they_are_waiting_for_100_continue:
                    # No body comes before our 100: answer now and close (reading it waited
                    # READ_TIMEOUT and closed unanswered; the CLI passing a file open to a
                    # daemon without that route got no 404 to fall back on).
                    await _send(conn, stream, replace(refusal, headers=[
                        *refusal.headers, ("connection", "close")]), head, sent=sent)
                    return False
                body_ok = await _discard_body(conn, stream)
                await _send(conn, stream, refusal, head, sent=sent)
                return body_ok and conn.our_state is h11.DONE and conn.their_state is h11.DONE
            if conn.they_are_waiting_for_100_continue:  # else curl waits 1 s a body > 1 MiB
                with trio.fail_after(READ_TIMEOUT):
                    await stream.send_all(conn.send(h11.InformationalResponse(
                        status_code=100, headers=[])))
            if self.router.is_streaming(method, target.path):
                return await self._serve_streaming(conn, stream, shell, policy, head, sent,
                                                   event, conns)
            body = bytearray()
            while True:
                try:
                    part = await _next_event(conn, stream)
                except trio.TooSlowError:
                    log.warning("request body stalled", route=target.path,
                                timeout_s=READ_TIMEOUT)
                    await _send(conn, stream, _body_timeout(), sent=sent)
                    return False
                if isinstance(part, h11.Data):
                    body += part.data
                    if len(body) > MAX_BODY_BYTES:
                        await _send(conn, stream, Response.error(
                            f"request body over {MAX_BODY_BYTES} bytes", 413), sent=sent)
                        return False
                elif isinstance(part, h11.EndOfMessage):
                    break
                else:
                    return False
            request = Request(method=method, path=target.path, query=query, body=bytes(body),
                              headers=headers, kubo=shell.kubo)

            async def answer() -> None:
                await _send(conn, stream, await self.router.dispatch(request), head,
                            trailer=policy.stream_errors == "trailer", sent=sent)

            ready = self.router.answer_now(request)
            if ready is not None:
                await _send(conn, stream, ready, head,
                            trailer=policy.stream_errors == "trailer", sent=sent)
            else:
                await _until_client_leaves(conn, stream, answer())
            return conn.our_state is h11.DONE and conn.their_state is h11.DONE
        finally:
            if self.metrics is not None:
                self.metrics.observe(self.name, sent.route, sent.status, sent.bytes,
                                     time.monotonic() - started)

    async def _serve_streaming(self, conn: h11.Connection, stream: trio.abc.Stream,
                               shell: Request, policy: Policy, head: bool, sent: _Sent,
                               event: h11.Request | None = None,
                               conns: list[h11.Connection] | None = None) -> bool:
        """A route that reads its body as it goes; its answer may stream out while the body
        still comes in (``add`` reports each file as it is stored).

        An HTTP/1.1 body on a socket is read without h11 (``_socket_body``): h11 copied every
        uploaded byte three times (into its buffer, out of it twice) after ``recv`` had put it
        in a fresh 1 MiB buffer each time. The answer then goes through a twin connection that
        saw the same head with an empty body, which is in step with the client for the next
        request once the body's end has been read here."""
        fast = None if event is None or conns is None else _fast_body_setup(conn, stream, event)
        if fast is not None:
            assert conns is not None and isinstance(stream, trio.SocketStream)
            twin, framing = fast
            leftover: list[bytes] = []
            pending = conn.trailing_data[0]
            chunks = _socket_body(stream, framing, pending, leftover)
            conn = conns[0] = twin  # errors are answered on it too
            try:
                response = await self.router.dispatch(
                    Request(method=shell.method, path=shell.path, query=shell.query,
                            chunks=chunks, headers=shell.headers, kubo=shell.kubo,
                            receive_fds=_fd_receiver(stream, framing, pending)))
                answer = _send(conn, stream, response, head,
                               trailer=policy.stream_errors == "trailer", sent=sent)
                if framing.done:
                    # The body is in (a passed file, an upload read whole): nothing reads the
                    # socket while the answer runs, so a watcher notices the client leaving.
                    # What came behind the body goes to h11 first, before what it reads.
                    if leftover and leftover[0]:  # (b"" would tell h11 the client closed)
                        conn.receive_data(leftover.pop())
                    await _until_client_leaves(conn, stream, answer)
                else:
                    await answer
                    async for _ in chunks:  # whatever the handler left unread
                        pass
            finally:
                await chunks.aclose()
            if leftover and leftover[0]:
                conn.receive_data(leftover[0])  # a request pipelined behind the body
            return (framing.done and conn.our_state is h11.DONE
                    and conn.their_state is h11.DONE)
        chunks = _body_chunks(conn, stream)
        try:
            response = await self.router.dispatch(
                Request(method=shell.method, path=shell.path, query=shell.query,
                        chunks=chunks, headers=shell.headers, kubo=shell.kubo))
            await _send(conn, stream, response, head,
                        trailer=policy.stream_errors == "trailer", sent=sent)
            if conn.their_state is h11.SEND_BODY:
                async for _ in chunks:  # whatever the handler left unread
                    pass
        finally:
            await chunks.aclose()
        return conn.our_state is h11.DONE and conn.their_state is h11.DONE


#: A request line and header fields the kept-answer loop parses itself (RFC 9112 as h11
#: reads it, narrowed: printable ASCII targets, no obsolete line folding).
_REQUEST_LINE = re.compile(rb"(GET|HEAD) ([!-~]+) HTTP/1\.1")
_FIELD = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*"
                    rb"((?:[\x21-\x7e\x80-\xff]+(?:[ \t]+[\x21-\x7e\x80-\xff]+)*)?)[ \t]*")
_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE = re.compile(r"(?:[\x21-\x7e\x80-\xff]+(?:[ \t]+[\x21-\x7e\x80-\xff]+)*)?")
#: Request headers that change how a request is framed or the connection kept: h11 handles
#: those requests.
_LEFT_TO_H11 = frozenset(("content-length", "transfer-encoding", "expect", "connection",
                          "upgrade", "te", "trailer"))


#: Where h11 ends a request head: the first blank line, CRLF or bare LF.
_BLANK_LINE = re.compile(rb"\n\r?\n")
#: Bytes a request's method (a token) may start with.
_TOKEN_BYTES = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                         b"abcdefghijklmnopqrstuvwxyz")


def _head_end(buf: bytearray, start: int = 0) -> int | None:
    """Where the first request head in ``buf`` ends, as h11 would read it: the offset of its
    closing CRLF CRLF, -1 while none has arrived, or None when h11 must read it now: a head
    ending in a bare LF (h11 answers it), or a first byte no method starts with (h11 refuses
    one under 0x21, such as a TLS ClientHello's, at once; waiting for a CRLF CRLF that never
    comes held such a connection until the idle timeout). ``start``: no blank line begins
    before it (the bytes searched already)."""
    if buf and buf[0] not in _TOKEN_BYTES:
        return None
    blank = _BLANK_LINE.search(buf, start)
    if blank is None:
        return -1
    at = blank.start()
    return at - 1 if at >= 1 and buf[at - 1:at + 3] == b"\r\n\r\n" else None


def _simple_head(head: bytes) -> tuple[str, str, tuple[tuple[str, str], ...]] | None:
    """(method, target, headers with lower-case names) of a GET or HEAD over HTTP/1.1 with no
    body and one Host, or None for anything else (h11 then reads it, and refuses what is
    malformed)."""
    lines = head.split(b"\r\n")
    first = _REQUEST_LINE.fullmatch(lines[0])
    if first is None:
        return None
    headers = []
    hosts = 0
    for line in lines[1:]:
        field_ = _FIELD.fullmatch(line)
        if field_ is None:
            return None
        name = field_[1].decode("ascii").lower()
        if name in _LEFT_TO_H11:
            return None
        hosts += name == "host"
        headers.append((name, field_[2].decode("latin-1")))
    if hosts != 1:
        return None
    return first[1].decode("ascii"), first[2].decode("ascii"), tuple(headers)


def _response_head(response: Response) -> bytes | None:
    """The status line and headers h11 would write for a whole (bytes) answer kept alive,
    or None if a header is not one h11 would send."""
    assert isinstance(response.body, bytes)
    out = [b"HTTP/1.1 %d \r\n" % response.status]
    for name, value in (("content-type", response.content_type), *response.headers,
                        ("content-length", str(len(response.body)))):
        if not _VALUE.fullmatch(value) or not _NAME.fullmatch(name):
            return None
        out.append(b"%s: %s\r\n" % (name.encode("ascii"), value.encode("latin-1")))
    out.append(b"\r\n")
    return b"".join(out)


class ApiServer(HttpServer):
    """The node's control API: the unix socket our CLI uses, plus Kubo's RPC on TCP."""

    def __init__(self, socket_path: Path | None, router: Router, *,
                 listen: Sequence[str] = (), policy: Policy | None = None,
                 api_file: Path | None = None, metrics: HttpMetrics | None = None) -> None:
        super().__init__("api", router, socket_path=socket_path, listen=listen, policy=policy,
                         api_file=api_file, metrics=metrics)


@dataclass
class _Sent:
    """What went out for one request (for the metrics)."""

    route: str
    status: int = 0
    bytes: int = 0


async def _discard_body(conn: h11.Connection, stream: trio.abc.Stream,
                        limit: int = MAX_BODY_BYTES) -> bool:
    """Read and drop a refused request's body (up to ``limit``); False if the connection
    cannot be reused."""
    seen = 0
    while conn.their_state is h11.SEND_BODY:
        part = await _next_event(conn, stream)
        if isinstance(part, h11.Data):
            seen += len(part.data)
            if seen > limit:
                return False
        elif not isinstance(part, h11.EndOfMessage):
            return False
    return True


class _ClientGone(Exception):
    """The client closed its connection while we were still answering."""


class _BodyTimeout(Exception):
    """No byte of a streamed request body arrived for ``READ_TIMEOUT``: the router answers
    408 (a stalled client is not our bug: no 500, no traceback)."""


def _body_timeout() -> Response:
    return Response.error(
        f"request body: nothing received for {READ_TIMEOUT:g} s; request timed out", 408)


async def _until_client_leaves(conn: h11.Connection, stream: trio.abc.Stream,
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


async def _body_chunks(conn: h11.Connection, stream: trio.abc.Stream
                       ) -> AsyncGenerator[bytes, None]:
    while True:
        try:
            event = await _next_event(conn, stream, read_size=BODY_READ_SIZE)
        except trio.TooSlowError:
            raise _BodyTimeout() from None
        if isinstance(event, h11.Data):
            yield bytes(event.data)
        elif isinstance(event, h11.EndOfMessage):
            return
        else:
            raise h11.RemoteProtocolError("connection closed in the middle of the body")


#: Framing headers of a request: the twin connection of a body read here sees none of them.
_FRAMING = (b"content-length", b"transfer-encoding", b"expect")


def _fast_body_setup(conn: h11.Connection, stream: trio.abc.Stream, event: h11.Request
                     ) -> tuple[h11.Connection, BodyFraming] | None:
    """(twin connection, framing) to read this request's body without h11, or None to leave
    it to h11 (not a socket, not HTTP/1.1, no body to read)."""
    if not isinstance(stream, trio.SocketStream) or conn.their_state is not h11.SEND_BODY \
            or event.http_version != b"1.1":
        return None
    headers = {name: value for name, value in event.headers}
    if b"transfer-encoding" in headers:  # h11 refused any coding but chunked
        framing = BodyFraming(None)
    else:
        framing = BodyFraming(int(headers.get(b"content-length", b"0")))
    twin = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
    twin.receive_data(b"".join([
        event.method, b" ", event.target, b" HTTP/1.1\r\n",
        *(b"%s: %s\r\n" % (name, value) for name, value in event.headers
          if name not in _FRAMING),
        b"content-length: 0\r\n\r\n"]))
    if not isinstance(twin.next_event(), h11.Request) or \
            not isinstance(twin.next_event(), h11.EndOfMessage):
        return None
    return twin, framing


def _fd_receiver(stream: trio.SocketStream, framing: BodyFraming, pending: bytes
                 ) -> Callable[[int], Awaitable[list[int]]] | None:
    """How a route on the unix socket takes the descriptors sent with a one-byte body.

    Only ``recvmsg`` gets them: a plain read of that byte would make the kernel close them,
    so the client sends it after our 100 Continue and nothing has read it yet (``pending``
    empty). The byte counts as the body read (``framing``)."""
    sock = stream.socket
    if sock.family != trio.socket.AF_UNIX:
        return None

    async def receive_fds(limit: int) -> list[int]:
        if pending or framing.chunked or framing.remaining != 1:
            raise ApiError("send the file descriptor as a one-byte body after the daemon's "
                           "100 Continue (Expect: 100-continue)", 400)
        try:
            with trio.fail_after(READ_TIMEOUT):
                data, ancillary, flags, _ = await sock.recvmsg(
                    1, socket.CMSG_SPACE(4 * limit), socket.MSG_CMSG_CLOEXEC)
        except trio.TooSlowError:
            raise _BodyTimeout() from None
        fds: list[int] = []
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds += array.array("i", payload[:len(payload) - len(payload) % 4])
        if not data:
            raise h11.RemoteProtocolError("connection closed in the middle of the body")
        framing.parse(bytearray(data), 0, len(data))
        if not fds or len(fds) > limit or flags & socket.MSG_CTRUNC:
            for fd in fds:
                os.close(fd)
            raise ApiError(f"expected 1 to {limit} open file descriptors with the request, "
                           f"got {len(fds)}{' and more' if flags & socket.MSG_CTRUNC else ''}",
                           400)
        return fds

    return receive_fds


_CHUNK_HEAD = re.compile(rb"([0-9A-Fa-f]{1,20})(?:;[^\r\n]*)?[ \t]*")
#: A chunk's data up to this size is handed on whole, in one piece, when it is not all in
#: yet: an uploader's block then reaches the frame decoder as one bytes object it keeps.
HOLD_CHUNK = 1024 * 1024
#: Chunk data pieces under this size are joined into one piece with their neighbours.
SMALL_PIECE = 64 * 1024


class BodyFraming:
    """Sans-IO reader of a request body's framing (Content-Length, or chunked as RFC 9112
    with trailers skipped): ``parse`` says which spans of a buffer are body data.
    ``length`` None: chunked."""

    def __init__(self, length: int | None) -> None:
        self.chunked = length is None
        self.remaining = length or 0  # data bytes left of the body, or of the current chunk
        self.size = 0  # of the current chunk
        self.crlf = 0  # bytes of the CRLF behind a chunk's data still to skip
        self.trailer = False
        self.done = length == 0

    def parse(self, buf: bytearray, start: int, end: int
              ) -> tuple[list[tuple[int, int]], int]:
        """(spans of data in ``buf[start:end]``, where parsing stopped); the caller keeps
        ``buf[stop:end]`` and adds to it. Raises h11.RemoteProtocolError on a bad framing."""
        spans: list[tuple[int, int]] = []
        pos = start
        while pos < end and not self.done:
            if self.remaining:
                if (self.chunked and self.remaining == self.size <= HOLD_CHUNK
                        and end - pos < self.remaining):
                    break  # the whole chunk in one piece once it is in
                n = min(self.remaining, end - pos)
                spans.append((pos, pos + n))
                pos += n
                self.remaining -= n
                if not self.remaining:
                    if self.chunked:
                        self.crlf = 2
                    else:
                        self.done = True
            elif self.crlf:
                n = min(self.crlf, end - pos)
                if buf[pos:pos + n] != b"\r\n"[2 - self.crlf:2 - self.crlf + n]:
                    raise h11.RemoteProtocolError("malformed chunk footer")
                pos += n
                self.crlf -= n
            elif self.trailer:  # ends where h11 ends it: an empty line, CRLF or bare LF
                if buf[pos:pos + 1] == b"\n":
                    pos += 1
                elif end - pos < 2:
                    break
                elif buf[pos:pos + 2] == b"\r\n":
                    pos += 2
                else:
                    blank = _BLANK_LINE.search(buf, pos, end)
                    if blank is None:
                        if end - pos > MAX_HEADER_BYTES:
                            raise h11.RemoteProtocolError("chunked trailer too long")
                        break
                    _check_trailer(bytes(buf[pos:blank.end()]))
                    pos = blank.end()
                self.done = True
            else:
                found = buf.find(b"\r\n", pos, end)
                if found < 0:
                    if end - pos > 1024:
                        raise h11.RemoteProtocolError("chunk header too long")
                    break
                match = _CHUNK_HEAD.fullmatch(buf, pos, found)
                if match is None:
                    raise h11.RemoteProtocolError(
                        f"illegal chunk header: {bytes(buf[pos:min(found, pos + 40)])!r}")
                self.size = self.remaining = int(match[1], 16)
                pos = found + 2
                self.trailer = not self.size
        return spans, pos


#: A request whose trailer the chunked parser checks through h11 (trailers are rare).
_TRAILER_PROBE = (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"0\r\n")


def _check_trailer(block: bytes) -> None:
    """h11.RemoteProtocolError unless h11 accepts ``block`` as a chunked body's trailer."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(_TRAILER_PROBE + block)
    while not isinstance(event := conn.next_event(), h11.EndOfMessage):
        if event is h11.NEED_DATA:
            raise h11.RemoteProtocolError("malformed chunked trailer")


#: The receive buffer of a streamed body starts this big (a sized one at its length and some,
#: if less), grows to hold a whole held chunk, and doubles while recvs fill it, up to
#: ``BODY_BUFFER``: a client that stalls after its head holds 64 KiB, not 2 MiB (100 such
#: took 96 -> 298 MiB of RSS); a fast upload reaches 2 MiB reads after five recvs.
BODY_BUFFER_START = 64 * 1024
BODY_BUFFER = 2 * BODY_READ_SIZE
#: Free bytes wanted behind what the buffer holds before a recv.
BODY_BUFFER_ROOM = 4096


async def _socket_body(stream: trio.SocketStream, framing: BodyFraming, pending: bytes,
                       leftover: list[bytes]) -> AsyncGenerator[bytes, None]:
    """A request body received into one reused buffer and handed on as bytes, one copy out
    of it per piece; the bytes behind the body (a pipelined request) go to ``leftover``."""
    size = BODY_BUFFER_START if framing.chunked else \
        min(BODY_BUFFER_START, framing.remaining + BODY_BUFFER_ROOM)
    buf = bytearray(max(size, len(pending)))
    view = memoryview(buf)
    buf[:len(pending)] = pending
    start, end = 0, len(pending)
    filled = False  # the last recv filled all the room it had: the client sends fast
    try:
        while True:
            spans, start = framing.parse(buf, start, end)
            small: list[memoryview] = []
            for a, b in spans:
                if b - a < SMALL_PIECE:
                    small.append(view[a:b])
                    continue
                if small:
                    yield b"".join(small)
                    small = []
                yield bytes(view[a:b])
            if small:
                yield b"".join(small)
            if framing.done:
                leftover.append(bytes(view[start:end]))
                return
            if start == end:
                start = end = 0
            elif len(buf) - end < SMALL_PIECE or start + framing.remaining > len(buf):
                tail = bytes(view[start:end])  # a held chunk, or a cut header: to the front
                buf[:len(tail)] = tail
                start, end = 0, len(tail)
            held = framing.chunked and 0 < framing.remaining == framing.size <= HOLD_CHUNK
            # bytes the buffer must hold from ``start``: a held chunk whole, else some room
            need = framing.remaining + 2 if held else end - start + BODY_BUFFER_ROOM
            if start + need > len(buf) or (filled and len(buf) < BODY_BUFFER):
                grown = bytearray(max(need, min(2 * len(buf), BODY_BUFFER)))
                grown[:end - start] = view[start:end]
                view.release()
                buf, view = grown, memoryview(grown)
                start, end = 0, end - start
            try:
                with trio.fail_after(READ_TIMEOUT):
                    got = await stream.socket.recv_into(view[end:])
            except trio.TooSlowError:
                raise _BodyTimeout() from None
            if not got:
                raise h11.RemoteProtocolError("connection closed in the middle of the body")
            filled = end + got == len(buf)
            end += got
    finally:
        view.release()


async def _next_event(conn: h11.Connection, stream: trio.abc.Stream,
                      timeout: float | None = None, read_size: int = READ_SIZE) -> Any:
    """h11's next event, receiving as needed; each receive waits at most ``timeout``
    (``READ_TIMEOUT`` when None, read at the call)."""
    if timeout is None:
        timeout = READ_TIMEOUT
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        if timeout == math.inf:  # the caller's own scope bounds the wait
            data = await stream.receive_some(read_size)
        else:
            with trio.fail_after(timeout):
                data = await stream.receive_some(read_size)
        conn.receive_data(data)  # b"" marks end of stream


async def _send(conn: h11.Connection, stream: trio.abc.Stream, response: Response,
                head: bool = False, *, trailer: bool = False, sent: _Sent | None = None) -> None:
    """Send a response; a body that fails part-way ends the transfer as the policy says.

    An error after the first bytes cannot change the status any more. With ``trailer`` (Kubo's
    RPC) the chunked body ends with an ``X-Stream-Error`` trailer carrying the error, as Kubo
    does; otherwise the connection is closed without the final chunk, so every client sees a
    broken transfer instead of a short body that looks complete. Either way it is logged here.
    """
    headers = [("content-type", response.content_type), *response.headers]
    body = response.body
    # A streamed body whose length is known ahead (a gateway file) keeps its Content-Length.
    sized = any(name.lower() == "content-length" for name, _ in response.headers)
    streamed = not isinstance(body, bytes) and not sized
    if isinstance(body, bytes):
        headers.append(("content-length", str(len(body))))
    elif not sized:
        headers.append(("transfer-encoding", "chunked"))
        if trailer:
            headers.append(("trailer", "X-Stream-Error"))
    if sent is not None:
        sent.status = response.status
    # A whole (bytes) answer goes out in one write (one syscall, one wake-up of the client)
    # when small; a streamed one sends its headers at once (a subscriber waits on them).
    pending = conn.send(h11.Response(status_code=response.status, headers=headers))
    stream_error = ""
    if head:
        aclose = getattr(body, "aclose", None)
        if aclose is not None:
            await aclose()
    elif isinstance(body, bytes):
        if body:
            pending = await _send_data(conn, stream, pending, body)
            if sent is not None:
                sent.bytes += len(body)
    else:
        batch: list[bytes | memoryview] = []
        batched = 0
        try:  # the body is closed even if the head cannot be sent (it may own a file)
            await _write(stream, pending)
            pending = b""
            while True:
                try:
                    chunk = await anext(body)
                except StopAsyncIteration:
                    break
                except (trio.BrokenResourceError, trio.ClosedResourceError, _ClientGone):
                    raise
                except h11.RemoteProtocolError as exc:  # the client broke off its own body
                    raise _ClientGone() from exc
                except Exception as exc:
                    log.warning("response failed mid-stream", error=_describe(exc),
                                how="trailer" if trailer and streamed else "connection aborted")
                    if not (trailer and streamed):
                        raise _ClientGone() from exc  # ends this connection, nothing else
                    stream_error = _stream_error_text(exc)
                    break
                if chunk:
                    if sized:  # no framing to add: chunks go out together (one writev)
                        batch += conn.send_with_data_passthrough(_data(chunk)) or ()
                        batched += len(chunk)
                        if batched >= BATCH_BYTES or len(batch) >= BATCH_PARTS:
                            await _write_parts(stream, batch)
                            batch, batched = [], 0
                    else:
                        pending = await _send_data(conn, stream, pending, chunk, flush=True)
                    if sent is not None:
                        sent.bytes += len(chunk)
            if batch:
                await _write_parts(stream, batch)
        finally:
            aclose = getattr(body, "aclose", None)
            if aclose is not None:
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    await aclose()
    trailers = [("X-Stream-Error", stream_error)] if stream_error and streamed else []
    await _write(stream, pending + conn.send(h11.EndOfMessage(headers=trailers)))


#: Below this a body chunk is copied behind the bytes already pending (one write); above, the
#: pending bytes and h11's framing go out on their own and the chunk itself is written as it
#: is (no copy of a 256 KiB block to join it with a few framing bytes).
COALESCE_BYTES = 64 * 1024


def _data(chunk: bytes | memoryview) -> h11.Data:
    """h11 frames a chunk by its length and passes the buffer itself through: a view of a
    block goes to the socket uncopied (h11's annotation says bytes)."""
    return h11.Data(data=chunk)  # type: ignore[arg-type]


async def _send_data(conn: h11.Connection, stream: trio.abc.Stream, pending: bytes,
                     data: bytes | memoryview, *, flush: bool = False) -> bytes:
    """Send one body chunk behind ``pending`` (bytes not yet written); returns what is still
    pending: a small chunk may wait for the end of the message unless ``flush``; after a big
    one, the few bytes closing its chunked framing wait for the next write."""
    parts = conn.send_with_data_passthrough(_data(data))
    assert parts is not None
    if len(data) < COALESCE_BYTES:
        pending += b"".join(parts)
        if flush:
            await _write(stream, pending)
            pending = b""
        return pending
    for part in parts:  # framing, the data itself (not copied), framing
        if part is data:
            if pending:
                await _write(stream, pending)
                pending = b""
            await _write(stream, data)
        else:
            pending += part
    return pending


def _sysconf(name: str, default: int) -> int:
    """``os.sysconf(name)``, or ``default`` where it is unknown (or says no limit)."""
    try:
        value = os.sysconf(name)
    except (ValueError, OSError, AttributeError):
        return default
    return value if value > 0 else default


#: A streamed body of known length (a gateway file) is written in pieces of about this many
#: bytes, several chunks in one system call: each write costs a pass of the event loop and a
#: wake-up of the client, and a 256 MiB file is 1,024 blocks.
BATCH_BYTES = 1024 * 1024
#: ... or of this many chunks, whichever comes first: one ``sendmsg`` takes at most IOV_MAX
#: buffers (1,024 on Linux; more fail with EMSGSIZE), and a file of 512-byte blocks has
#: 2,048 of them in 1 MiB.
BATCH_PARTS = 512
#: The most buffers one ``sendmsg`` is given (``_write_parts`` splits longer lists).
IOV_MAX = min(_sysconf("SC_IOV_MAX", 1024), 1024)


async def _write_parts(stream: trio.abc.Stream, parts: list[bytes | memoryview]) -> None:
    """Write ``parts`` in order, by ``sendmsg`` (writev) of up to IOV_MAX of them where the
    stream is a socket."""
    sock = getattr(stream, "socket", None)
    if sock is None or len(parts) == 1:
        for part in parts:
            await _write(stream, part)
        return
    views = [memoryview(part) for part in parts]
    try:
        with trio.fail_after(WRITE_TIMEOUT):
            while views:
                sent = await sock.sendmsg(views[:IOV_MAX])
                while sent:
                    if sent >= len(views[0]):
                        sent -= len(views.pop(0))
                    else:
                        views[0] = views[0][sent:]
                        sent = 0
    except OSError as exc:  # as SocketStream.send_all reports a peer gone
        raise trio.BrokenResourceError(f"socket write failed: {exc}") from exc


def _stream_error_text(exc: Exception) -> str:
    """An error as one header value: the message of our own errors, printable ASCII only."""
    text = str(exc) if isinstance(exc, IpfsKitError) else _describe(exc)
    text = " ".join(text.split())
    return text.encode("ascii", "replace").decode()[:1000] or type(exc).__name__


async def _write(stream: trio.abc.Stream, data: bytes | memoryview) -> None:
    with trio.fail_after(WRITE_TIMEOUT):
        await stream.send_all(data)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    if len(text) > 300:
        text = text[:300] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _send_if_possible(
    conn: h11.Connection, stream: trio.abc.Stream, response: Response
) -> None:
    if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
        with contextlib.suppress(
            h11.LocalProtocolError, trio.BrokenResourceError, trio.ClosedResourceError,
            trio.TooSlowError, _ClientGone,
        ):
            await _send(conn, stream, response)
