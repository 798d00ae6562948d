"""Client of the control API, used by the CLI subcommands (httpx over the unix socket)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from ..errors import ApiError, DaemonNotRunningError

Args = Mapping[str, str | Sequence[str]]


class ApiClient:
    def __init__(self, socket_path: Path, repo: Path, timeout: float = 30.0) -> None:
        self.socket_path = socket_path
        self.repo = repo
        self._client = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(socket_path)),
            base_url="http://ipfs-kit-node",
            timeout=httpx.Timeout(timeout, connect=2.0),
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_socket(self) -> None:
        if not self.socket_path.exists():
            raise DaemonNotRunningError(str(self.repo), f"no API socket at {self.socket_path}")

    def call(self, command: str, args: Args | None = None,
             body: bytes | Iterable[bytes] | None = None) -> Any:
        """POST /api/v0/<command> and return the decoded JSON answer."""
        with self.stream(command, args, body) as response:
            data = response.read()
        return json.loads(data) if data.strip() else None

    def stream(
        self, command: str, args: Args | None = None,
        body: bytes | Iterable[bytes] | None = None,
    ) -> _Streamed:
        self._check_socket()
        return _Streamed(self, f"/api/v0/{command}", args or {}, body)

    def get(self, path: str) -> bytes:
        self._check_socket()
        try:
            response = self._client.get(path)
        except httpx.TransportError as exc:
            raise self._not_running(exc) from None
        _raise_for_error(response)
        return response.content

    def _not_running(self, exc: Exception) -> DaemonNotRunningError:
        return DaemonNotRunningError(
            str(self.repo), f"the API socket {self.socket_path} refused the connection: {exc}"
        )


class _Streamed:
    """A streamed response as a context manager; errors mapped to ours."""

    def __init__(self, client: ApiClient, path: str, args: Args,
                 body: bytes | Iterable[bytes] | None) -> None:
        self._client = client
        self._request = client._client.build_request(
            "POST", path, params=dict(args), content=body
        )
        self._response: httpx.Response | None = None

    def __enter__(self) -> _Streamed:
        try:
            self._response = self._client._client.send(self._request, stream=True)
        except httpx.ConnectError as exc:
            raise self._client._not_running(exc) from None
        except httpx.TimeoutException as exc:
            raise ApiError(f"the daemon did not answer in time ({exc})") from None
        if self._response.status_code >= 400:
            self._response.read()
            _raise_for_error(self._response)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._response is not None:
            self._response.close()

    def read(self) -> bytes:
        assert self._response is not None
        return self._response.read()

    def iter_lines(self) -> Iterator[str]:
        assert self._response is not None
        try:
            yield from self._response.iter_lines()
        except httpx.TransportError as exc:
            raise ApiError(f"the stream from the daemon broke: {exc}") from None

    def iter_bytes(self) -> Iterator[bytes]:
        assert self._response is not None
        try:
            yield from self._response.iter_bytes(chunk_size=1 << 20)
        except httpx.TimeoutException:
            raise ApiError("the daemon stopped sending (timed out mid-stream); "
                           "see its log for the cause") from None
        except httpx.TransportError as exc:
            raise ApiError(f"the stream from the daemon broke: {exc}") from None


def _raise_for_error(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        message = response.json()["Message"]
    except (ValueError, KeyError, TypeError):
        message = response.text.strip() or f"HTTP {response.status_code}"
    raise ApiError(message, status=response.status_code)
