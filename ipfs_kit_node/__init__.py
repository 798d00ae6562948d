"""ipfs-kit-node: a long-running Python IPFS peer daemon on py-libp2p and trio."""

__version__ = "0.1.0"

from .errors import (
    ApiError,
    ClosedNodeError,
    ConfigError,
    DaemonNotRunningError,
    IpfsKitError,
    PeerBrokenError,
    RepoError,
    RepoLockedError,
)

TYPE_CHECKING = False  # importing typing costs a CLI command ~4 ms

if TYPE_CHECKING:
    from .client import AsyncClient, Client
    from .config import NodeConfig, load_config
    from .node import Node
    from .repo import Repo


def __getattr__(name: str) -> object:
    # Loaded on first use: Node and Repo pull in py-libp2p (~0.5 s), config ~45 ms; a client
    # command needs none of them.
    if name in ("Client", "AsyncClient"):
        from . import client

        return getattr(client, name)
    if name in ("NodeConfig", "load_config"):
        from . import config

        return getattr(config, name)
    if name == "Node":
        from .node import Node

        return Node
    if name == "Repo":
        from .repo import Repo

        return Repo
    raise AttributeError(name)


__all__ = [
    "ApiError",
    "AsyncClient",
    "Client",
    "ClosedNodeError",
    "ConfigError",
    "DaemonNotRunningError",
    "IpfsKitError",
    "Node",
    "NodeConfig",
    "PeerBrokenError",
    "Repo",
    "RepoError",
    "RepoLockedError",
    "__version__",
    "load_config",
]
