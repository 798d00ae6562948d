"""The Node: one py-libp2p host and one trio nursery that every long-lived task lives in.

Services start in order (host, pubsub, peer book, DHT, bootstrap, mDNS, block store, Bitswap,
pinning, root announcer, connection manager, control API, role) and stop in reverse.
READY=1 goes to systemd after the last one has started; STOPPING=1 when a stop begins.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field

import multiaddr
import trio
from libp2p.abc import IHost
from libp2p.crypto.keys import KeyPair

from .api.gateway import Gateway, GatewayServer
from .api.metrics import HttpMetrics
from .api.router import Router
from .api.routes import register_routes
from .api.rpc_policy import rpc_policy
from .api.server import ApiServer
from .components import Components
from .config import NodeConfig
from .errors import ClosedNodeError, ListenError
from .host import build_host, check_listen_addresses, origin_addresses, peer_addresses
from .logs import get_logger
from .loopwatch import LoopWatch
from .metrics import NodeMetrics
from .pinning.service import PinningService
from .protocols.bitswap import Bitswap
from .protocols.connmgr import ConnManager
from .protocols.dht import Dht, ProvideRoots
from .protocols.mdns import MdnsDiscovery
from .protocols.peers import PeerBook
from .protocols.pubsub import PubsubService
from .repo import Repo
from .roles import load_role
from .service import Service, TaskStatus
from .storage.service import StoreService
from .swarm import Bootstrapper, connect
from .systemd import SystemdNotifier

log = get_logger(__name__)

# How long one service may take to wind down before the node moves on to the next.
STOP_GRACE = 0.5


class HostService:
    """Keeps the host listening for the node's lifetime."""

    name = "host"

    def __init__(self, host: IHost, listen: tuple[str, ...]) -> None:
        self.host = host
        self.listen = [multiaddr.Multiaddr(a) for a in listen]

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        check_listen_addresses(self.listen)
        async with self.host.run(self.listen), trio.open_nursery() as nursery:
            if self.listen and not self.host.get_addrs():
                raise ListenError(", ".join(map(str, self.listen)), "no listener started")
            nursery.start_soon(self.host.get_peerstore().start_cleanup_task, 300)
            task_status.started()
            await trio.sleep_forever()


@dataclass
class _Running:
    service: Service
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    done: trio.Event = field(default_factory=trio.Event)


class Node:
    """A whole ipfs-kit-node peer. ``await node.run()`` until ``node.stop()``."""

    def __init__(self, config: NodeConfig, repo: Repo, key_pair: KeyPair | None = None) -> None:
        self.config = config
        self.repo = repo
        key_pair = key_pair or repo.load_or_create_identity()
        self.host = build_host(key_pair, config.node.listen, config.connmgr)
        self.peer_id = self.host.get_id()
        self.peers = PeerBook(self.host)
        self.router = Router()
        self.blocks = StoreService(repo.path, config.storage)
        self.loopwatch = LoopWatch()
        self.metrics = NodeMetrics(
            config.role, str(self.peer_id), lambda: len(self.host.get_connected_peers()),
            self.loopwatch,
        )
        self.bitswap = Bitswap(self.host, lambda: self.blocks.store, self.metrics.registry)
        self.dht = Dht(self.host, config.routing.mode, self.peers,
                       reprovide_interval=config.routing.reprovide_interval)
        if config.routing.mode != "none":
            # Blocks no connected peer has are looked up on the DHT.
            self.bitswap.find_providers = self.dht.find_providers
        self.pubsub = PubsubService(self.host)
        self.pinning = PinningService(
            config, repo.path, lambda: self.blocks.store, self.bitswap,
            origins=lambda: origin_addresses(self.host),
            dial=lambda addr: connect(self.host, self.peers, addr, how="routing"))
        self.blocks.remote = self.pinning.remote  # pinned blocks held remotely may be evicted
        self.components = Components(
            config=config, repo=repo, host=self.host, peers=self.peers,
            metrics=self.metrics, blocks=self.blocks,
            fetch=self.bitswap, pubsub=self.pubsub, pins=self.pinning, dht=self.dht,
        )
        self.role = load_role(config.role)(self.components)
        register_routes(self.router, self.components, self.role)
        # The control socket (our CLI) and Kubo's RPC on TCP serve the same routes.
        self.api = ApiServer(repo.api_socket(config.api.socket), self.router,
                             listen=config.api.listen, policy=rpc_policy(config.api),
                             api_file=repo.path / "api",
                             metrics=HttpMetrics.of(self.metrics.registry))
        # The gateway: read-only, its own routes, blocks read through Bitswap.
        self.gateway = GatewayServer(
            Gateway(self.bitswap, lambda c: self.blocks.store.is_local(c)),
            config.gateway.listen, url_file=repo.path / "gateway",
            metrics=HttpMetrics.of(self.metrics.registry))
        self.services: list[Service] = [
            HostService(self.host, config.node.listen),
            self.pubsub,  # before anything dials: it ignores connections made before it
            self.peers,
            self.dht,  # before bootstrap, so bootstrap peers enter the routing table
            Bootstrapper(self.host, self.peers, config.node.bootstrap),
            MdnsDiscovery(self.host, self.peers, enabled=config.routing.mdns),
            self.blocks,
            self.bitswap,
            self.pinning,  # after the store and Bitswap: its remote tier reads through them
            ProvideRoots(self.dht, lambda: self.blocks.store),
            ConnManager(self.host, self.bitswap, self.peers, config.connmgr,
                        config.node.masters),
            self.api,
            *([self.gateway] if config.gateway.listen else []),
            self.role,
        ]
        self.notifier = SystemdNotifier()
        self._stop = trio.Event()
        self._running: list[_Running] = []
        self._stopped = False
        self.log = log.bind(peer=str(self.peer_id), role=config.role)

    def addresses(self) -> list[str]:
        return peer_addresses(self.host)

    def stop(self) -> None:
        """Ask the node to stop; ``run()`` returns once every service has wound down."""
        self._stop.set()

    async def run(self, *, task_status: TaskStatus[Node] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        if self._stopped:
            raise ClosedNodeError("this node has stopped; build a new Node to start again")
        started = time.monotonic()
        trio.lowlevel.add_instrument(self.loopwatch)
        try:
            async with trio.open_nursery() as nursery:
                for service in self.services:
                    running = _Running(service)
                    await nursery.start(self._supervise, running)
                    self._running.append(running)
                nursery.start_soon(self.notifier.watchdog)
                await self.notifier.notify("READY=1\nSTATUS=running")
                self.log.info("node ready", addrs=self.addresses(),
                              startup_ms=round((time.monotonic() - started) * 1000, 1))
                # What start made (modules, py-libp2p's tables, ~100,000 objects) lives as long
                # as the process: frozen, a full collection no longer walks it (~25 ms each,
                # the event loop stopped meanwhile).
                gc.freeze()
                task_status.started(self)
                await self._stop.wait()
                await self.notifier.notify("STOPPING=1")
                self.log.info("node stopping")
                await self._stop_services()
                nursery.cancel_scope.cancel()
        finally:
            self._stopped = True
            trio.lowlevel.remove_instrument(self.loopwatch)
        self.log.info("node stopped",
                      longest_loop_stall_ms=round(self.loopwatch.longest * 1000, 1))

    async def _supervise(self, running: _Running, *, task_status: TaskStatus[None]) -> None:
        try:
            with running.scope:
                await running.service.run(task_status=task_status)
        finally:
            running.done.set()

    async def _stop_services(self) -> None:
        for running in reversed(self._running):
            running.scope.cancel()
            with trio.move_on_after(STOP_GRACE) as grace:
                await running.done.wait()
            if grace.cancelled_caught:
                self.log.warning("service slow to stop", service=running.service.name)
