"""Sans-IO parts shared by Client and AsyncClient: where the daemon is, how a call is written,
how an answer or an error is read. No sockets here; both clients only move bytes.

Imports stay light (stdlib only): a CLI command spends its whole budget of about 100 ms
before its first byte reaches the daemon.
"""

from __future__ import annotations

import base64
import json
import os
from collections import namedtuple
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from ..errors import ApiError

TYPE_CHECKING = False  # importing typing costs a CLI command ~4 ms
if TYPE_CHECKING:
    from typing import Any

Args = Mapping[str, "str | int | float | bool | Sequence[str]"]
Body = bytes | Iterable[bytes] | None
API_PREFIX = "/api/v0/"
DEFAULT_SOCKET = "api.sock"
USER_AGENT = "ipfs-kit-node-client"


class Endpoint(namedtuple("Endpoint", "unix host port tls authorization repo",
                          defaults=(None, "127.0.0.1", 5001, False, None, ""))):
    """Where the RPC listens: a unix socket in the repo (our CLI's plain wire forms) or TCP
    (Kubo's RPC, multibase pubsub topics); ``authorization`` goes in every request. A named
    tuple, not a dataclass: importing dataclasses costs a CLI command ~8 ms."""

    unix: str | None
    host: str
    port: int
    tls: bool
    authorization: str | None
    repo: str

    @property
    def kubo(self) -> bool:
        """The TCP listener speaks Kubo's wire forms (multibase topics)."""
        return self.unix is None

    @property
    def url(self) -> str:
        if self.unix is not None:
            return "http://ipfs-kit-node"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    def describe(self) -> str:
        return f"the API socket {self.unix}" if self.unix else f"the RPC at {self.url}"


def default_repo() -> Path:
    """$IPFS_KIT_PATH or ~/.ipfs-kit-node (the daemon's own default, repo.default_repo_path)."""
    from ..repo import default_repo_path

    return default_repo_path()


def auth_header(auth: str | tuple[str, str] | None) -> str | None:
    """``"bearer:TOKEN"``/``"basic:USER:PASS"`` (as ``[api] authorizations`` spells secrets),
    a ``(user, password)`` pair, or a ready ``Authorization`` value."""
    if auth is None:
        return None
    if isinstance(auth, tuple):
        user, password = auth
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    kind, sep, rest = auth.partition(":")
    if sep and kind.lower() == "bearer":
        return f"Bearer {rest}"
    if sep and kind.lower() == "basic":
        return "Basic " + base64.b64encode(rest.encode()).decode()
    return auth


def endpoint(api: str | os.PathLike[str] | None = None, *, repo: str | os.PathLike[str] | None
             = None, auth: str | tuple[str, str] | None = None,
             config_file: str | os.PathLike[str] | None = None) -> Endpoint:
    """Resolve where to talk: ``api`` as ``http(s)://host:port``, a ``/ip4|ip6|dns/…/tcp/N``
    multiaddr or a unix socket path; else the repo's socket (``[api] socket``), else the TCP
    address the daemon wrote to ``REPO/api`` (as Kubo does)."""
    header = auth_header(auth)
    repo_path = Path(repo).expanduser() if repo is not None else default_repo()
    if api is not None:
        text = os.fspath(api)
        if text.startswith(("http://", "https://")):
            parts = urlsplit(text)
            tls = parts.scheme == "https"
            return Endpoint(host=parts.hostname or "127.0.0.1",
                            port=parts.port or (443 if tls else 80), tls=tls,
                            authorization=header, repo=str(repo_path))
        if text.startswith("/") and "/tcp/" in text:
            host, port = _multiaddr_tcp(text)
            return Endpoint(host=host, port=port, authorization=header, repo=str(repo_path))
        return Endpoint(unix=text, authorization=header, repo=str(repo_path))
    socket_path = repo_path / socket_name(repo_path, config_file)
    api_file = repo_path / "api"
    if not socket_path.exists() and api_file.exists():
        try:
            host, port = _multiaddr_tcp(api_file.read_text().strip())
        except (OSError, ValueError):
            pass
        else:
            return Endpoint(host=host, port=port, authorization=header, repo=str(repo_path))
    return Endpoint(unix=str(socket_path), authorization=header, repo=str(repo_path))


def socket_name(repo: Path, config_file: str | os.PathLike[str] | None = None) -> str:
    """``[api] socket`` from the same layers as the daemon (role files leave it alone):
    environment over ``--config`` over the repo's config.toml. The TOML is parsed only when it
    mentions a socket, and a file that does not parse is left to the full config loader,
    which names the error."""
    env = os.environ.get("IPFS_KIT_API_SOCKET")
    if env:
        return env
    for path in (config_file, repo / "config.toml"):
        if path is None:
            continue
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            text = ""
        if "socket" not in text:
            continue
        import tomllib

        try:
            value = tomllib.loads(text).get("api", {}).get("socket")
        except tomllib.TOMLDecodeError:
            from ..config import load_config

            return load_config("worker", repo_config=repo / "config.toml",
                               config_file=Path(config_file) if config_file else None
                               ).api.socket
        if isinstance(value, str):
            return value
    return DEFAULT_SOCKET


def _multiaddr_tcp(text: str) -> tuple[str, int]:
    parts = text.strip().split("/")
    if len(parts) < 5 or parts[1] not in ("ip4", "ip6", "dns", "dns4", "dns6") \
            or parts[3] != "tcp":
        raise ValueError(f"not a TCP multiaddr: {text!r}")
    return parts[2], int(parts[4])


def target(command: str, args: Args | None) -> str:
    """The request target of an RPC command: ``/api/v0/<command>?<args>``."""
    path = command if command.startswith("/") else API_PREFIX + command
    if not args:
        return path
    pairs: list[tuple[str, str]] = []
    for key, value in args.items():
        if isinstance(value, bool):
            pairs.append((key, "true" if value else "false"))
        elif isinstance(value, str | int | float):
            pairs.append((key, str(value)))
        else:
            pairs.extend((key, str(v)) for v in value)
    return f"{path}?{urlencode(pairs)}"


def error_of(status: int, body: bytes) -> ApiError:
    """The daemon's error answer as ApiError carrying its message (Kubo's ``Message``)."""
    try:
        message = json.loads(body)["Message"]
    except (ValueError, KeyError, TypeError):
        message = body.decode("utf-8", "replace").strip() or f"HTTP {status}"
    return ApiError(str(message), status=status)


def decode_json(data: bytes) -> Any:
    return json.loads(data) if data.strip() else None


def topic_arg(topic: str, kubo: bool) -> str:
    """A pubsub topic as the listener takes it: multibase base64url over Kubo's RPC."""
    if not kubo:
        return topic
    return "u" + base64.urlsafe_b64encode(topic.encode()).decode().rstrip("=")


def topic_of(text: str, kubo: bool) -> str:
    """A topic name as the listener lists it (multibase over Kubo's RPC) back to text."""
    return unb64(text).decode("utf-8", "replace") if kubo else text


def unb64(text: str) -> bytes:
    """Kubo's multibase base64url (``u`` prefix) fields of pubsub messages."""
    body = text[1:] if text.startswith("u") else text
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))


def request_headers(endpoint: Endpoint, body: object,
                    headers: list[tuple[str, str]] | None = None
                    ) -> tuple[list[tuple[str, str]], bytes | None]:
    """A request's headers for ``body`` (shared by both clients' HTTP), and the body as one
    ``bytes`` when it is one (else it goes chunked)."""
    hdrs = [("host", endpoint.host if endpoint.unix is None else "localhost"),
            ("user-agent", USER_AGENT), *(headers or [])]
    if endpoint.authorization:
        hdrs.append(("authorization", endpoint.authorization))
    boundary = getattr(body, "boundary", None)
    if boundary:
        hdrs.append(("content-type", f"multipart/form-data; boundary={boundary}"))
    whole = bytes(body) if isinstance(body, bytes | bytearray | memoryview) else None
    if body is None or whole is not None:
        hdrs.append(("content-length", str(len(whole) if whole is not None else 0)))
    else:
        hdrs.append(("transfer-encoding", "chunked"))
    return hdrs, whole


def task_doc(handler: str, inputs: Sequence[str] | str = (), params: Mapping[str, Any]
             | None = None, priority: int = 0, timeout: float | None = None
             ) -> dict[str, Any]:
    """A task as task/submit takes it."""
    doc: dict[str, Any] = {"handler": handler,
                           "inputs": [inputs] if isinstance(inputs, str) else list(inputs),
                           "params": dict(params or {}), "priority": priority}
    if timeout is not None:
        doc["timeout"] = timeout
    return doc
