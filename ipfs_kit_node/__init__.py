"""ipfs-kit-node: a long-running Python IPFS peer daemon on py-libp2p and trio."""

__version__ = "0.1.0"

from .config import NodeConfig, load_config
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


def __getattr__(name: str) -> object:
    # Node and Repo pull in py-libp2p (~0.5 s); client commands do not need it.
    if name == "Node":
        from .node import Node

        return Node
    if name == "Repo":
        from .repo import Repo

        return Repo
    raise AttributeError(name)


__all__ = [
    "ApiError",
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
