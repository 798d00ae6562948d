"""What a listener lets through before the router sees a request: the unix socket's policy,
and Kubo's RPC rules on TCP (browser origins, POST only, authorizations)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from ..logs import get_logger
from .router import Request, Response

log = get_logger(__name__)


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
