"""The older name of the one client: ``ApiClient(socket, repo, timeout)`` is
``ipfs_kit_node.client.Client`` on that socket (kept for callers written against it)."""

from __future__ import annotations

from pathlib import Path

from ..client import Client


class ApiClient(Client):
    """``Client`` on a unix socket; ``get(path)`` is ``Client.http_get`` (GET /metrics)."""

    def __init__(self, socket_path: Path, repo: Path, timeout: float = 30.0) -> None:
        super().__init__(socket_path, repo=repo, timeout=timeout)
        self.socket_path = socket_path
        self.repo = repo

    def get(self, path: str, target: object = None) -> bytes:  # type: ignore[override]
        return self.http_get(path)
