"""What the node hands to every service and role: narrow handles, built once."""

from __future__ import annotations

from dataclasses import dataclass

from libp2p.abc import IHost

from .config import NodeConfig
from .metrics import NodeMetrics
from .pinning.service import PinningService
from .protocols.bitswap import Bitswap
from .protocols.dht import Dht
from .protocols.peers import PeerBook
from .protocols.pubsub import PubsubService
from .repo import Repo
from .storage.service import StoreService


@dataclass(frozen=True)
class Components:
    config: NodeConfig
    repo: Repo
    host: IHost
    peers: PeerBook
    metrics: NodeMetrics
    blocks: StoreService  # .store is the TieredStore once the node has started
    fetch: Bitswap  # get/prefetch: blocks from the store, or verified from peers
    pubsub: PubsubService
    pins: PinningService  # queue of pins on Kubo / Cluster (may have no target configured)
    dht: Dht  # routing (its mode may be "none")
