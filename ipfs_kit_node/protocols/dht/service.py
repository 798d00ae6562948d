"""The trio shell around py-libp2p's KadDHT: what the library leaves to its caller.

py-libp2p 0.8.1 speaks ``/ipfs/kad/1.0.0`` compatibly with Kubo and Helia, but it only puts
peers in the routing table when they query us or turn up in a lookup, so a node that has just
dialled its bootstrap peer has an empty table. It returns the same provider once per peer that
answered, and it takes keys as strings it guesses the meaning of. This shell adds connected
kad-speaking peers to the table, uses the CID's multihash as the provider key (as Kubo and
Helia do), de-duplicates providers and leaves their addresses in the peerstore so Bitswap can
dial them, and re-announces the roots we provide.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import multiaddr
import trio
from libp2p.abc import IHost, INetConn, INetStream, INetwork
from libp2p.kad_dht.common import PROTOCOL_ID
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.tools.anyio_service import background_trio_service
from multiformats import CID

from ...cid import to_cid
from ...logs import get_logger
from ...service import TaskStatus, keep_running
from ...storage.store import TieredStore
from ..guard import guarded
from ..notifee import ConnectionNotifee
from ..peers import PeerBook

log = get_logger(__name__)

MODES = {"dhtserver": DHTMode.SERVER, "dhtclient": DHTMode.CLIENT}
KAD_PROTOCOL = str(PROTOCOL_ID)
# Kubo's default Reprovider.Interval; provider records expire after 48 h on servers.
REPROVIDE_INTERVAL = 12 * 3600.0
# Identify runs right after connect; these waits cover a slow or busy peer (~8 s in all).
IDENTIFY_POLL = (0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0)
# Long enough for Bitswap to dial a provider it was just told about.
PROVIDER_ADDR_TTL = 600
# Looking up the addresses of a provider that came without any.
PROVIDER_ADDR_LOOKUP_TIMEOUT = 5.0
JOIN_QUEUE = 1024


class _KadDHT(KadDHT):
    """KadDHT that checks identify before adding a peer that queried us.

    py-libp2p adds every peer that opens a kad stream, so DHT clients land in a server's
    table and are handed to others as closer peers, who then dial them in vain. go-libp2p
    checks that the peer serves the protocol; so does this.
    """

    async def add_peer(self, peer_id: ID, *, skip_server_mode_check: bool = False) -> bool:
        del skip_server_mode_check  # the check is never skipped
        return await super().add_peer(peer_id)

    async def handle_stream(self, stream: INetStream) -> None:
        """py-libp2p's handler behind our edge guard: a peer's bad message costs its stream."""
        await guarded(str(PROTOCOL_ID), super().handle_stream)(stream)


def provider_key(cid: CID) -> bytes:
    """The DHT key of a CID's provider records: its multihash, whatever the CID version or
    codec, so v0 and v1 CIDs of one block share providers (Kubo and Helia use the same key)."""
    return bytes(cid.digest)


class Dht(ConnectionNotifee):
    """Content and peer routing over Kademlia. A node Service; in mode "none" it is inert."""

    name = "dht"

    def __init__(self, host: IHost, mode: str, peers: PeerBook | None = None, *,
                 reprovide_interval: float = REPROVIDE_INTERVAL) -> None:
        if mode != "none" and mode not in MODES:
            raise ValueError(f"unknown DHT mode {mode!r}; expected dhtserver, dhtclient or none")
        self.host = host
        self.mode = mode
        self.reprovide_interval = reprovide_interval
        # Built now, not in run(): a server registers its kad handler here, so identify
        # announces /ipfs/kad/1.0.0 to every peer from the first connection on.
        self.kad: KadDHT | None = _KadDHT(host, MODES[mode]) if mode in MODES else None
        self._peers = peers
        self._provided: dict[bytes, CID] = {}
        self._nursery: trio.Nursery | None = None
        self._table_ready = trio.Event()
        self._join_send, self._join_receive = trio.open_memory_channel[ID](JOIN_QUEUE)

    # -- service -------------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        if self.kad is None:
            task_status.started()
            await trio.sleep_forever()
        network = self.host.get_network()
        network.register_notifee(self)
        try:
            async with background_trio_service(self.kad), trio.open_nursery() as nursery:
                self._nursery = nursery
                for peer_id in self.host.get_connected_peers():  # connected before we started
                    self._join_send.send_nowait(peer_id)
                nursery.start_soon(self._admit_joiners, nursery)
                nursery.start_soon(keep_running, "dht reprovide", self._reprovide_loop)
                log.info("dht started", mode=self.mode)
                task_status.started()
        finally:
            self._nursery = None
            network.remove_notifee(self)

    # -- routing table -------------------------------------------------------------------------

    async def _admit_joiners(self, nursery: trio.Nursery) -> None:
        async for peer_id in self._join_receive:
            nursery.start_soon(self._admit, peer_id)

    async def _admit(self, peer_id: ID) -> None:
        """Add a connected peer to the routing table once identify says it is a DHT server
        (the spec keeps clients out of routing tables)."""
        try:
            await self._admit_checked(peer_id)
        except Exception as exc:  # the edge of this task: one peer, never the node
            log.warning("dht admission failed", peer=str(peer_id), error=repr(exc)[:300])

    async def _admit_checked(self, peer_id: ID) -> None:
        assert self.kad is not None
        peerstore = self.host.get_peerstore()
        for delay in IDENTIFY_POLL:
            if not self.host.get_network().get_connections(peer_id):
                return
            try:
                protocols = peerstore.get_protocols(peer_id)
            except Exception:  # not in the peerstore yet
                protocols = []
            if not protocols:  # identify has not answered yet
                await trio.sleep(delay)
                continue
            if KAD_PROTOCOL not in protocols:
                # A client that queried us before identify answered got in unchecked.
                self.kad.routing_table.remove_peer(peer_id)
            elif await self.kad.add_peer(peer_id):
                log.debug("dht peer added", peer=str(peer_id))
                self._table_ready.set()
            return
        log.debug("no identify answer; peer left out of the routing table", peer=str(peer_id))

    def routing_table_peers(self) -> list[ID]:
        return [] if self.kad is None else self.kad.routing_table.get_peer_ids()

    # -- content routing -----------------------------------------------------------------------

    async def provide(self, cid: CID) -> None:
        """Announce to the closest DHT servers that we have ``cid``; failures are logged."""
        if self.kad is None:
            return
        key = provider_key(cid)
        accepted = await self.kad.provider_store.provide(key)
        # py-libp2p would also re-announce every key ever provided, 10 min after and then
        # every 22 h, removed roots included; the reprovide loop here is the one schedule.
        self.kad.provider_store.providing_keys.discard(key)
        if not accepted:
            log.info("provide reached no DHT server", cid=str(cid))

    async def find_providers(self, cid: CID, limit: int = 20) -> AsyncIterator[PeerInfo]:
        """Peers that announced ``cid``, each once, never us, each with an address to dial.

        py-libp2p finishes the whole lookup before it returns, so results arrive together.
        """
        if self.kad is None:
            return
        found = await self.kad.provider_store.find_providers(provider_key(cid), limit)
        seen = {self.host.get_id()}
        for info in found:
            if info.peer_id in seen:
                continue
            seen.add(info.peer_id)
            dialable = await self._with_addresses(info)
            if dialable is not None:
                yield dialable

    async def _with_addresses(self, info: PeerInfo) -> PeerInfo | None:
        if info.addrs:  # the peerstore's TTL is per peer: never refresh it with nothing
            self.host.get_peerstore().add_addrs(info.peer_id, info.addrs, PROVIDER_ADDR_TTL)
        addrs = _known_addrs(self.host, info.peer_id)
        if not addrs:
            with trio.move_on_after(PROVIDER_ADDR_LOOKUP_TIMEOUT):
                found = await self.find_peer(info.peer_id)
                addrs = list(found.addrs) if found is not None else []
        if not addrs:
            log.debug("provider without addresses skipped", peer=str(info.peer_id))
            return None
        if self._peers is not None and info.peer_id not in self.host.get_connected_peers():
            self._peers.note_found(info.peer_id, "dht")
        return PeerInfo(info.peer_id, addrs)

    # -- peer routing --------------------------------------------------------------------------

    async def find_peer(self, peer_id: ID) -> PeerInfo | None:
        """The peer's addresses: from the routing table or peerstore, else a network lookup."""
        if self.kad is None:
            return None
        return await self.kad.find_peer(peer_id)

    # -- reproviding ---------------------------------------------------------------------------

    def add_provided(self, cid: CID) -> None:
        """Keep announcing ``cid`` (a pinned root) every ``reprovide_interval`` seconds."""
        key = provider_key(cid)
        if key in self._provided:
            return
        self._provided[key] = cid
        if self._nursery is not None and self._table_ready.is_set():
            self._nursery.start_soon(self._provide_quietly, cid)

    def remove_provided(self, cid: CID) -> None:
        """Stop re-announcing ``cid``; its records expire on the servers within 48 h."""
        self._provided.pop(provider_key(cid), None)

    def provided(self) -> list[CID]:
        return list(self._provided.values())

    async def _reprovide_loop(self) -> None:
        # Announcing before any DHT server is in the table would reach no one.
        await self._table_ready.wait()
        while True:
            for cid in list(self._provided.values()):
                await self._provide_quietly(cid)
            await trio.sleep(self.reprovide_interval)

    async def _provide_quietly(self, cid: CID) -> None:
        try:
            await self.provide(cid)
        except Exception as exc:  # the network's fault: logged, retried next round
            log.info("provide failed", cid=str(cid), error=repr(exc))

    # -- INotifee ------------------------------------------------------------------------------

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        try:
            self._join_send.send_nowait(conn.muxed_conn.peer_id)
        except trio.WouldBlock:
            log.warning("dht join queue full; peer left out of the routing table",
                        peer=str(conn.muxed_conn.peer_id))

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        pass






def _known_addrs(host: IHost, peer_id: ID) -> list[multiaddr.Multiaddr]:
    try:
        return list(host.get_peerstore().addrs(peer_id))
    except Exception:  # PeerStoreError: never heard of it, or its addresses expired
        return []


class ProvideRoots:
    """Announces the store's pinned roots on the DHT, and every root pinned or unpinned later
    (``ipfs add`` pins its root, so what we add is found by others)."""

    name = "provide-roots"

    def __init__(self, dht: Dht, store: Callable[[], TieredStore]) -> None:
        self._dht = dht
        self._store = store

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        store = self._store()
        store.add_pin_listener(self._on_pin)
        for root in store.pins():
            self._dht.add_provided(to_cid(root))
        task_status.started()
        await trio.sleep_forever()

    def _on_pin(self, cid: CID, pinned: bool) -> None:
        if pinned:
            self._dht.add_provided(cid)
        else:
            self._dht.remove_provided(cid)
