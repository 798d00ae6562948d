"""What a route sees and answers (``Request``, ``Response``) and the ``Router`` that dispatches
to it: the edge guard where our typed errors become HTTP statuses. Routes depend on this
module alone, not on the server's connection loop."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import h11
import trio
from multiformats import CID

from ..cid import to_cid
from ..errors import ApiError, BlockNotFoundError, IpfsKitError
from ..logs import get_logger
from . import limits

log = get_logger(__name__)


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
            log.warning("request body stalled", route=request.path, timeout_s=limits.READ_TIMEOUT)
            return _body_timeout()
        except Exception as exc:  # the edge: a bug or an input we did not foresee
            log.error("API handler failed", route=request.path, error=_describe(exc),
                      exc_info=not isinstance(exc, RecursionError))
            return Response.error(f"{request.path}: internal error: {_describe(exc)}", 500)


class _ClientGone(Exception):
    """The client closed its connection while we were still answering."""


class _BodyTimeout(Exception):
    """No byte of a streamed request body arrived for ``READ_TIMEOUT``: the router answers
    408 (a stalled client is not our bug: no 500, no traceback)."""


def _body_timeout() -> Response:
    return Response.error(
        f"request body: nothing received for {limits.READ_TIMEOUT:g} s; request timed out", 408)


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


def _describe(exc: BaseException) -> str:
    text = str(exc)
    if len(text) > 300:
        text = text[:300] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
