"""Connection manager: above the role's high water mark, connections are closed down to the
low water mark, least valuable first (blocks exchanged, then the newest), sparing connections
younger than the grace period, configured masters and peers in an active Bitswap session.

py-libp2p has a pruner of its own, but it never closes a connection with an open stream, and
with gossipsub and the DHT every connection has one: it would never trim anything.
"""

from __future__ import annotations

import time

import trio
from libp2p.abc import IHost
from libp2p.network.config import ConnectionConfig
from libp2p.peer.id import ID

from ..config import ConnMgrSection
from ..logs import get_logger
from ..service import TaskStatus, keep_running
from .bitswap import Bitswap
from .peers import PeerBook

log = get_logger(__name__)

MASTER_TAG = "ipfs-kit:master"
SESSION_TAG = "ipfs-kit:bitswap-session"
VALUE_TAG = "ipfs-kit:bitswap"
REFRESH = 1.0


class ConnManager:
    name = "connmgr"

    def __init__(self, host: IHost, bitswap: Bitswap, peers: PeerBook,
                 limits: ConnMgrSection, masters: tuple[str, ...] = ()) -> None:
        self.host = host
        self.bitswap = bitswap
        self.peers = peers
        defaults = ConnectionConfig()
        self.low = limits.low_water if limits.low_water is not None else defaults.low_watermark
        self.high = limits.high_water if limits.high_water is not None \
            else defaults.high_watermark
        self.grace = limits.grace_period if limits.grace_period is not None \
            else defaults.grace_period
        self.masters = [ID.from_base58(m) for m in masters]
        self._session: set[ID] = set()
        self._nursery: trio.Nursery | None = None

    @property
    def _swarm(self):  # type: ignore[no-untyped-def]  # py-libp2p's Swarm
        return self.host.get_network()

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        for peer in self.masters:
            self._swarm.protect(peer, MASTER_TAG)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await keep_running("connmgr", self._loop)

    async def _loop(self) -> None:
        while True:
            self.refresh()
            self.trim()
            await trio.sleep(REFRESH)

    def trim(self) -> list[ID]:
        """Close connections down to the low water mark; returns the peers let go."""
        connected = self.host.get_connected_peers()
        if len(connected) <= self.high:
            return []
        now = time.time()
        tags = self._swarm.tag_store

        def trimmable(peer: ID) -> bool:
            record = self.peers.get(peer)
            young = record is not None and now - record.connected_at < self.grace
            return not young and not tags.is_protected(peer)

        def worth(peer: ID) -> tuple[int, float]:
            record = self.peers.get(peer)
            return tags.get_tag_value(peer), -(record.connected_at if record else now)

        victims = sorted(filter(trimmable, connected), key=worth)[:len(connected) - self.low]
        for peer in victims:
            log.info("trimming connection", peer=str(peer), connections=len(connected),
                     high_water=self.high)
            if self._nursery is not None:
                self._nursery.start_soon(self._close, peer)
        return victims

    async def _close(self, peer: ID) -> None:
        try:
            await self.host.disconnect(peer)
        except Exception as exc:
            log.info("closing a trimmed connection failed", peer=str(peer), error=str(exc))

    def refresh(self) -> None:
        """Protect peers we are fetching from right now; value peers by blocks exchanged."""
        active = self.bitswap.session_peers()
        for peer in active - self._session:
            self._swarm.protect(peer, SESSION_TAG)
        for peer in self._session - active:
            self._swarm.unprotect(peer, SESSION_TAG)
        self._session = active
        for peer, (received, sent) in self.bitswap.exchanged().items():
            self._swarm.tag_peer(peer, VALUE_TAG, min(100, received + sent))
