"""HTTP/1.1 servers (h11, sans-IO) for the node: the control API on a unix socket inside the
repo, and the Kubo RPC on TCP multiaddrs, both serving one ``Router``.

``HttpServer`` owns the listeners (unix socket and TCP), the connection loop and the edge
guard; what a listener lets through (Kubo's Origin/CSRF rule, POST only, auth) is a separate
``Policy`` object (policy.py), so the gateway can reuse the listener code with rules of its own.
Kubo's conventions: ``POST /api/v0/<command>``, ``arg`` query parameters, JSON bodies, errors
as ``{"Message", "Code", "Type": "error"}``.

The loop's parts live beside it: router.py (what routes see: Request, Response, Router, and
where errors become statuses; routes import only that), body.py (request bodies, with and
without h11, and passed files), send.py (answers), fasthead.py (the kept-answer loop's own
head parsing), limits.py (sizes and timeouts).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Awaitable, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import h11
import trio

from ..errors import ListenError
from ..logs import get_logger
from ..service import TaskStatus
from . import limits
from .body import (
    _body_chunks,
    _discard_body,
    _fast_body_setup,
    _fd_receiver,
    _next_event,
    _socket_body,
)
from .fasthead import _head_end, _response_head, _simple_head
from .limits import (
    IDLE_TIMEOUT,
    MAX_BODY_BYTES,
    MAX_HEADER_BYTES,
    MAX_PIPELINED_BYTES,
    READ_SIZE,
    UNIX_SEND_BUFFER,
)
from .listen import TcpAddress, bind_tcp
from .metrics import HttpMetrics
from .policy import Policy, RpcPolicy, SocketPolicy
from .router import (
    Request,
    Response,
    Router,
    _body_timeout,
    _BodyTimeout,
    _ClientGone,
    _describe,
    _sole_error,
)
from .send import _send, _send_if_possible, _Sent, _write

log = get_logger(__name__)


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
                with trio.fail_after(limits.READ_TIMEOUT):
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
                                timeout_s=limits.READ_TIMEOUT)
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


class ApiServer(HttpServer):
    """The node's control API: the unix socket our CLI uses, plus Kubo's RPC on TCP."""

    def __init__(self, socket_path: Path | None, router: Router, *,
                 listen: Sequence[str] = (), policy: Policy | None = None,
                 api_file: Path | None = None, metrics: HttpMetrics | None = None) -> None:
        super().__init__("api", router, socket_path=socket_path, listen=listen, policy=policy,
                         api_file=api_file, metrics=metrics)


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
