"""The repository folder: identity, config, data folders, lock and API socket.

Layout (created on first start, folder mode 0700):
    identity.key   Ed25519 private key, libp2p protobuf encoding, mode 0600
    config.toml    the user's overrides (a layer above the role file)
    repo.lock      flock()ed by the running daemon; holds its PID
    api.sock       control API (unix socket, mode 0600), present while the daemon runs
    blocks/        the disk tier of the block store
    datastore/     indexes, journals and queues
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from pathlib import Path

from .errors import RepoError, RepoLockedError, is_disk_full

TYPE_CHECKING = False  # importing typing costs a CLI command ~4 ms
if TYPE_CHECKING:
    from typing import Any

    from libp2p.crypto.keys import KeyPair

DEFAULT_DIRNAME = ".ipfs-kit-node"
DATA_DIRS = ("blocks", "datastore")

CONFIG_TEMPLATE = """\
# ipfs-kit-node repo config: overrides the role's defaults for this repo.
# Keys and their effective values: `ipfs-kit-node config show --role ROLE`.
# Example:
# [node]
# listen = ["/ip4/0.0.0.0/tcp/4001"]
# [storage]
# max_size = "50GB"
"""


def _log() -> Any:
    """The logger, made on first use: client commands import this module for
    default_repo_path and must not pay for structlog (nor msgpack, via journal)."""
    from .logs import get_logger

    return get_logger(__name__)


def default_repo_path(env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ) if env is None else env
    if env.get("IPFS_KIT_PATH"):
        return Path(env["IPFS_KIT_PATH"]).expanduser()
    return Path.home() / DEFAULT_DIRNAME


class Repo:
    """A node's folder on disk. ``lock()`` must succeed before anything writes to it."""

    def __init__(self, path: Path) -> None:
        self.path = path.expanduser().absolute()
        self._lock_fd: int | None = None

    @property
    def identity_file(self) -> Path:
        return self.path / "identity.key"

    @property
    def config_file(self) -> Path:
        return self.path / "config.toml"

    @property
    def lock_file(self) -> Path:
        return self.path / "repo.lock"

    def api_socket(self, name: str = "api.sock") -> Path:
        return self.path / name

    def init(self) -> bool:
        """Create the folders and config template if missing; True when the repo is new."""
        from .journal import atomic_write, mkdir_durably

        new = not self.path.exists()
        self._refuse_foreign_repo()
        try:
            mkdir_durably(self.path)
            for name in DATA_DIRS:
                mkdir_durably(self.path / name)
            if not self.config_file.exists():
                atomic_write(self.config_file, CONFIG_TEMPLATE.encode())
        except OSError as exc:
            raise self._error(exc, f"cannot create repo {self.path}") from exc
        return new

    def _refuse_foreign_repo(self) -> None:
        """A Kubo (or js-ipfs) repo is not ours to write into: our packs in its blocks/ and
        our index in its datastore/ would mix with its own (`--repo ~/.ipfs` by habit)."""
        if self.identity_file.exists():
            return
        if (self.path / "datastore_spec").is_file() or (
                (self.path / "config").is_file() and (self.path / "version").is_file()):
            raise RepoError(
                f"{self.path} is a Kubo repo (it has config and version files); ipfs-kit-node "
                "keeps its own repo beside it: pass another --repo (default ~/.ipfs-kit-node)"
            )

    def _error(self, exc: OSError, what: str) -> RepoError:
        """One line saying what failed and what to do; a full disk is named as such."""
        if is_disk_full(exc):
            return RepoError(
                f"{what}: the disk holding {self.path} is full ({exc.strerror}); "
                "free some space on it, then start again"
            )
        return RepoError(f"{what}: {exc.strerror}; check permissions or pass another --repo")

    def lock(self) -> None:
        """Take the repo lock or raise RepoLockedError naming the holder."""
        try:
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise self._error(exc, f"cannot open {self.lock_file}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = self.lock_holder()
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise RepoLockedError(str(self.path), holder) from None
            raise self._error(exc, f"cannot lock {self.lock_file}") from exc
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as exc:
            os.close(fd)  # releases the flock
            raise self._error(exc, f"cannot write {self.lock_file}") from exc
        self._lock_fd = fd

    def lock_holder(self) -> int | None:
        try:
            return int(self.lock_file.read_text().strip() or 0) or None
        except (OSError, ValueError):
            return None

    def unlock(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._lock_fd, 0)
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def load_or_create_identity(self) -> KeyPair:
        """The node's Ed25519 key: created once, the same peer ID on every start."""
        # py-libp2p loads here, not at import: client commands import this module too.
        from libp2p.crypto.ed25519 import create_new_key_pair
        from libp2p.identity_utils import load_identity

        from .journal import atomic_write

        path = self.identity_file
        if not path.exists():
            key_pair = create_new_key_pair()
            try:  # atomically: a crash must not leave a torn key behind
                atomic_write(path, key_pair.private_key.serialize(), mode=0o600)
            except OSError as exc:
                raise self._error(exc, f"cannot write the identity key {path}") from exc
            _log().info("identity created", path=str(path))
            return key_pair
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            _log().warning("identity key is readable by others; fixing mode to 0600",
                        path=str(path), mode=oct(mode))
            path.chmod(0o600)
        try:
            return load_identity(path)
        except (ValueError, OSError) as exc:
            raise RepoError(
                f"identity key {path} cannot be loaded ({exc}); restore it from a backup, or "
                "move it away to create a new identity (the peer ID will change)"
            ) from exc
