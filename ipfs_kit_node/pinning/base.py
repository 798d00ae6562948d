"""What the Kubo and Cluster drivers share: credentials, one HTTP client, errors, JSON lines."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ..endpoints import parse_api_address
from ..errors import (
    ConfigError,
    PinningError,
    RemoteProtocolError,
    RemoteRefusedError,
    RemoteUnavailableError,
)
from .http import H11Transport

STREAM_ERROR = "x-stream-error"


@dataclass(frozen=True)
class Credentials:
    """Basic or bearer auth. ``repr`` hides the secret, so it never reaches a log line."""

    scheme: str  # "basic" | "bearer"
    secret: str  # "user:password" or the token

    def header(self) -> str:
        if self.scheme == "basic":
            return "Basic " + base64.b64encode(self.secret.encode()).decode()
        return f"Bearer {self.secret}"

    def __repr__(self) -> str:
        return f"Credentials({self.scheme}, ***)"


def load_credentials(spec: str | None, setting: str) -> Credentials | None:
    """``env:VAR``, ``file:PATH`` or ``credential:NAME`` (a systemd ``LoadCredential=``, read
    from ``$CREDENTIALS_DIRECTORY``) holding ``basic:user:password`` or ``bearer:token``.

    Secrets live outside the config so that `config show` and logs never carry them.
    """
    if not spec:
        return None
    kind, _, where = spec.partition(":")
    if kind == "credential":
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        if not directory or "/" in where:
            raise ConfigError("config", setting, f"{spec}: no systemd credential of that name "
                                                 "($CREDENTIALS_DIRECTORY is not set)")
        kind, where = "file", str(Path(directory) / where)
    if kind == "env":
        value = os.environ.get(where)
        if value is None:
            raise ConfigError("config", setting, f"environment variable {where} is not set")
    elif kind == "file":
        try:
            value = Path(where).read_text().strip()
        except OSError as exc:
            raise ConfigError("config", setting, f"cannot read {where}: {exc.strerror}"
                              ) from None
    else:
        raise ConfigError("config", setting, "expected env:VAR, file:PATH or credential:NAME")
    scheme, _, secret = value.strip().partition(":")
    if scheme not in ("basic", "bearer") or not secret or (scheme == "basic" and
                                                           ":" not in secret):
        raise ConfigError("config", setting, f"the secret in {spec} must read "
                                             "basic:USER:PASSWORD or bearer:TOKEN")
    return Credentials(scheme, secret)


class HttpService:
    """One remote API: a base URL, auth, a timeout on every call, our exception types."""

    service = "service"

    def __init__(self, api: str, *, credentials: Credentials | None = None,
                 timeout: float = 30.0) -> None:
        self.api = api
        self.endpoint = parse_api_address(api)
        self.credentials = credentials
        self.timeout = timeout

    def client(self, timeout: float | None = None) -> httpx.AsyncClient:
        headers = {"User-Agent": "ipfs-kit-node"}
        if self.credentials is not None:
            headers["Authorization"] = self.credentials.header()
        return httpx.AsyncClient(transport=H11Transport(self.endpoint),
                                 base_url=self.endpoint.base_url, headers=headers,
                                 timeout=httpx.Timeout(timeout or self.timeout, connect=5.0))

    @asynccontextmanager
    async def request(self, method: str, path: str, *, params: Any = None,
                      content: Any = None, headers: dict[str, str] | None = None,
                      timeout: float | None = None) -> AsyncIterator[httpx.Response]:
        """The response, status checked, body unread (stream it or ``aread`` it)."""
        async with self.client(timeout) as client:
            try:
                request = client.build_request(method, path, params=params, content=content,
                                               headers=headers)
                response = await client.send(request, stream=True)
            except httpx.TimeoutException:
                raise RemoteUnavailableError(
                    f"{self.service} at {self.api} did not answer {path.rsplit('/', 1)[-1]} "
                    f"within {timeout or self.timeout:.0f} s") from None
            except httpx.TransportError as exc:
                raise RemoteUnavailableError(
                    f"{self.service} at {self.api} is unreachable ({exc}); is it running?"
                ) from None
            try:
                if response.status_code >= 400:
                    await self._raise_for(response, path)
                yield response
            except httpx.TimeoutException:
                raise RemoteUnavailableError(
                    f"{self.service} at {self.api} stopped answering {path}") from None
            except httpx.TransportError as exc:
                raise RemoteProtocolError(
                    f"{self.service} at {self.api}: the answer to {path} broke off ({exc})"
                ) from None
            finally:
                await response.aclose()

    async def _raise_for(self, response: httpx.Response, path: str) -> None:
        body = await response.aread()
        message = body.decode(errors="replace").strip()[:500]
        try:
            doc = json.loads(body)
            if isinstance(doc, dict):  # Kubo: Message; Cluster: message
                message = str(doc.get("Message") or doc.get("message") or message)
        except ValueError:
            pass
        status = response.status_code
        where = f"{self.service} at {self.api}"
        if status in (401, 403):
            raise RemoteRefusedError(f"{where} refused our credentials for {path} ({status}: "
                                     f"{message}); check the configured secret")
        if status < 500:
            raise RemoteRefusedError(f"{where} refused {path} ({status}: {message})")
        if status == 500 and message:  # an error of the operation itself (Kubo's usual)
            raise PinningError(f"{where}: {path}: {message}")
        raise RemoteUnavailableError(f"{where} failed on {path} ({status}: {message})")

    async def json(self, method: str, path: str, **kw: Any) -> Any:
        """A single JSON answer (the last line, if the service streamed several)."""
        lines = [doc async for doc in self.json_lines(method, path, **kw)]
        if not lines:
            return None
        return lines[-1]

    async def json_lines(self, method: str, path: str, **kw: Any) -> AsyncIterator[Any]:
        """One JSON document per line; a truncated line or an X-Stream-Error trailer raises."""
        async with self.request(method, path, **kw) as response:
            if response.status_code == 204:
                return
            buffer = b""
            async for chunk in response.aiter_raw():
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield self._parse(line, path)
            if buffer.strip():
                yield self._parse(buffer, path)
            error = response.extensions.get("trailers", {}).get(STREAM_ERROR)
            if error:
                raise RemoteProtocolError(
                    f"{self.service} at {self.api}: {path} failed mid-stream: {error}")

    def _parse(self, line: bytes, path: str) -> Any:
        try:
            return json.loads(line)
        except ValueError:
            raise RemoteProtocolError(
                f"{self.service} at {self.api} sent malformed JSON for {path}: "
                f"{line[:200].decode(errors='replace')!r}") from None

    def expect(self, doc: Any, key: str, path: str) -> Any:
        """doc[key], or a clear error naming what the service sent instead."""
        if not isinstance(doc, dict) or key not in doc:
            raise RemoteProtocolError(
                f"{self.service} at {self.api} answered {path} without {key!r}: "
                f"{json.dumps(doc)[:200]}")
        return doc[key]
