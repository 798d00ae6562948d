"""The trio shell around py-libp2p's KadDHT: a dual DHT as Kubo runs it, and what the library
leaves to its caller.

Kubo runs two Kademlia DHTs: the LAN one (``/ipfs/lan/kad/1.0.0``) for peers reached at
private or loopback addresses, and the WAN one (``/ipfs/kad/1.0.0``) for peers with public
addresses; on a LAN or loopback it keeps its provider records in the LAN one. We run both: each
py-libp2p KadDHT sees the host through a view that renames its protocol and shows it only the
peers of its class that serve it (py-libp2p would otherwise query every connected peer, DHT or
not). Provide goes to both, lookups ask both and merge. Unlike Kubo, a server answers on both
DHTs from one set of provider records, and the WAN DHT also admits private peers that serve
only it (Helia and js-ipfs on a LAN), which Kubo's rule would leave unreachable.

py-libp2p only puts peers in the routing table when they query us or turn up in a lookup, so a
node that has just dialled its bootstrap peer has an empty table. It returns the same provider
once per peer that answered, and it takes keys as strings it guesses the meaning of. This shell
adds connected DHT servers to the tables, uses the CID's multihash as the provider key (as Kubo
and Helia do), de-duplicates providers and leaves their addresses in the peerstore so Bitswap
can dial them, and re-announces the roots we provide.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, Protocol

import multiaddr
import trio
from libp2p.abc import IHost, INetConn, INetStream, INetwork
from libp2p.custom_types import TProtocol
from libp2p.kad_dht.common import PROTOCOL_ID
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.kad_dht.pb.kademlia_pb2 import Message
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.tools.anyio_service import background_trio_service
from multiformats import CID

from ...cid import to_cid
from ...logs import get_logger
from ...service import TaskStatus, keep_running
from ..guard import guarded
from ..notifee import ConnectionNotifee
from ..peers import PeerBook

log = get_logger(__name__)

MODES = {"dhtserver": DHTMode.SERVER, "dhtclient": DHTMode.CLIENT}
KAD_PROTOCOL = str(PROTOCOL_ID)  # the WAN DHT
LAN_KAD_PROTOCOL = "/ipfs/lan/kad/1.0.0"
# Kubo's default Reprovider.Interval; provider records expire after 48 h on servers.
REPROVIDE_INTERVAL = 12 * 3600.0
# Identify runs right after connect; these waits cover a slow or busy peer (~2 min in all,
# as long as the connection lives: checked every 5 s at most). With ~8 s, twenty daemons on
# two loaded cores left their bootstrap server out of the table for good: a node whose table
# never filled never provided.
IDENTIFY_POLL = (0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0) + (5.0,) * 22
# Long enough for Bitswap to dial a provider it was just told about.
PROVIDER_ADDR_TTL = 600
# Looking up the addresses of a provider that came without any.
PROVIDER_ADDR_LOOKUP_TIMEOUT = 5.0
JOIN_QUEUE = 1024


def is_public(addr: multiaddr.Multiaddr) -> bool | None:
    """Whether an IP address in ``addr`` is globally routable; None if it has no IP address
    (DNS names count as public, as in go-libp2p's manet.IsPublicAddr)."""
    for proto in ("ip4", "ip6"):
        try:
            text = addr.value_for_protocol(proto)
        except Exception:
            continue
        if text:
            return ipaddress.ip_address(text).is_global
    text = str(addr)
    return True if text.startswith(("/dns", "/dnsaddr")) else None


class _PeerstoreView:
    """The peerstore one DHT of the pair sees: its protocol under the WAN name py-libp2p
    checks, and only the peers it may query."""

    def __init__(self, view: _HostView) -> None:
        self._view = view
        self._store = view.host.get_peerstore()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def get_protocols(self, peer_id: ID) -> list[str]:
        return [self._view.public_name(p) for p in self._store.get_protocols(peer_id)]

    def peer_ids(self) -> list[ID]:
        return [p for p in self._store.peer_ids() if self._view.admits(p)]


class _HostView:
    """The host as one DHT of the pair sees it (py-libp2p hard-codes ``/ipfs/kad/1.0.0``):
    streams and handlers under this DHT's protocol, and connected peers limited to those of
    its address class that serve it."""

    def __init__(self, host: IHost, protocol: str, admits: Callable[[ID], bool]) -> None:
        self.host = host
        self.protocol = protocol
        self.admits = admits
        self._peerstore = _PeerstoreView(self)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.host, name)

    def private_name(self, protocol: str) -> str:
        return self.protocol if str(protocol) == KAD_PROTOCOL else str(protocol)

    def public_name(self, protocol: str) -> str:
        return KAD_PROTOCOL if str(protocol) == self.protocol else \
            ("" if str(protocol) == KAD_PROTOCOL else str(protocol))

    async def new_stream(self, peer_id: ID, protocol_ids: Sequence[Any]) -> INetStream:
        return await self.host.new_stream(
            peer_id, [TProtocol(self.private_name(p)) for p in protocol_ids])

    def set_stream_handler(self, protocol_id: Any, handler: Any) -> None:
        self.host.set_stream_handler(TProtocol(self.private_name(protocol_id)), handler)

    def remove_stream_handler(self, protocol_id: Any) -> None:
        self.host.remove_stream_handler(TProtocol(self.private_name(protocol_id)))

    def get_connected_peers(self) -> list[ID]:
        return [p for p in self.host.get_connected_peers() if self.admits(p)]

    def get_peerstore(self) -> _PeerstoreView:
        return self._peerstore


class _NoAddProviderEcho:
    """An inbound DHT stream that never sends py-libp2p's answer to ADD_PROVIDER.

    py-libp2p echoes ADD_PROVIDER; Go (and the spec) send it and never read an answer, and Go
    reuses the stream for its next request, so it read our echo as the answer to that one: a
    Kubo that had just provided something got no providers from us for a minute. py-libp2p
    writes each answer as two writes (length, then message), so the length is held until the
    message shows what it is.
    """

    def __init__(self, stream: INetStream) -> None:
        self._stream = stream
        self._length: bytes | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    async def write(self, data: bytes) -> None:
        if self._length is None:
            if _is_bare_varint(data):
                self._length = bytes(data)
                return
            await self._stream.write(data)
            return
        length, self._length = self._length, None
        if _is_add_provider(data):
            return
        await self._stream.write(length + data)


def _is_bare_varint(data: bytes) -> bool:
    return 0 < len(data) <= 5 and all(b & 0x80 for b in data[:-1]) and not data[-1] & 0x80


def _is_add_provider(data: bytes) -> bool:
    message = Message()
    try:
        message.ParseFromString(data)
    except Exception:
        return False
    return bool(message.type == Message.MessageType.ADD_PROVIDER)


class _KadDHT(KadDHT):
    """KadDHT that checks identify (and the address class) before adding a peer that
    queried us.

    py-libp2p adds every peer that opens a kad stream, so DHT clients land in a server's
    table and are handed to others as closer peers, who then dial them in vain. go-libp2p
    checks that the peer serves the protocol; so does this.
    """

    def __init__(self, view: _HostView, mode: DHTMode, name: str) -> None:
        super().__init__(view, mode)  # type: ignore[arg-type]  # a host in all it uses
        self.view = view
        self.name = name

    async def add_peer(self, peer_id: ID, *, skip_server_mode_check: bool = False) -> bool:
        del skip_server_mode_check  # the check is never skipped
        if not self.view.admits(peer_id):
            return False
        return await super().add_peer(peer_id)

    async def handle_stream(self, stream: INetStream) -> None:
        """py-libp2p's handler behind our edge guard: a peer's bad message costs its stream."""
        echo_free = _NoAddProviderEcho(stream)
        await guarded(self.view.protocol, super().handle_stream)(echo_free)  # type: ignore[arg-type]


def provider_key(cid: CID) -> bytes:
    """The DHT key of a CID's provider records: its multihash, whatever the CID version or
    codec, so v0 and v1 CIDs of one block share providers (Kubo and Helia use the same key)."""
    return bytes(cid.digest)


class Dht(ConnectionNotifee):
    """Content and peer routing over the LAN and WAN Kademlia DHTs. A node Service; in mode
    "none" it is inert. ``mode`` (dhtserver or dhtclient) applies to both DHTs."""

    name = "dht"

    def __init__(self, host: IHost, mode: str, peers: PeerBook | None = None, *,
                 reprovide_interval: float = REPROVIDE_INTERVAL) -> None:
        if mode != "none" and mode not in MODES:
            raise ValueError(f"unknown DHT mode {mode!r}; expected dhtserver, dhtclient or none")
        self.host = host
        self.mode = mode
        self.reprovide_interval = reprovide_interval
        # Built now, not in run(): a server registers its handlers here, so identify announces
        # both DHT protocols to every peer from the first connection on.
        self.lan: KadDHT | None = None
        self.wan: KadDHT | None = None
        if mode in MODES:
            self.lan = _KadDHT(_HostView(host, LAN_KAD_PROTOCOL, self._lan_admits),
                               MODES[mode], "lan")
            self.wan = _KadDHT(_HostView(host, KAD_PROTOCOL, self._wan_admits),
                               MODES[mode], "wan")
            # One set of provider records answers on both DHTs (Kubo keeps two): a Helia
            # peer on a LAN provides on the WAN DHT only, and our LAN peers ask on the LAN one.
            self.wan.provider_store.providers = self.lan.provider_store.providers
        self._peers = peers
        self._provided: dict[bytes, CID] = {}
        self._nursery: trio.Nursery | None = None
        self._table_ready = trio.Event()
        self._join_send, self._join_receive = trio.open_memory_channel[ID](JOIN_QUEUE)
        self._admitting: set[ID] = set()  # peers an admission task waits on
        self._rejoined: set[ID] = set()  # of those, peers that connected again meanwhile

    @property
    def kads(self) -> list[KadDHT]:
        return [k for k in (self.lan, self.wan) if k is not None]

    # -- address classes -----------------------------------------------------------------------

    def _serves(self, peer_id: ID, protocol: str) -> bool:
        try:
            return protocol in self.host.get_peerstore().get_protocols(peer_id)
        except Exception:  # not in the peerstore (yet)
            return False

    def _lan_admits(self, peer_id: ID) -> bool:
        """A LAN DHT server we reach at a private or loopback address (Kubo's rule)."""
        if not self._serves(peer_id, LAN_KAD_PROTOCOL):
            return False
        conns = self.host.get_network().get_connections(peer_id)
        addrs = [a for c in conns for a in c.get_transport_addresses()] if conns \
            else _known_addrs(self.host, peer_id)
        return any(is_public(a) is False for a in addrs)

    def _wan_admits(self, peer_id: ID) -> bool:
        """A WAN DHT server with a public address (Kubo's rule), or one that speaks only the
        WAN DHT whatever its address: Helia and js-ipfs peers on a LAN serve just
        ``/ipfs/kad/1.0.0``, and Kubo's rule would leave them unreachable."""
        if not self._serves(peer_id, KAD_PROTOCOL):
            return False
        if not self._serves(peer_id, LAN_KAD_PROTOCOL):
            return True
        return any(is_public(a) for a in _known_addrs(self.host, peer_id))

    # -- service -------------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        if self.lan is None or self.wan is None:
            task_status.started()
            await trio.sleep_forever()
            return
        network = self.host.get_network()
        network.register_notifee(self)
        try:
            async with background_trio_service(self.lan), background_trio_service(self.wan), \
                    trio.open_nursery() as nursery:
                self._nursery = nursery
                for peer_id in self.host.get_connected_peers():  # connected before we started
                    self._join_send.send_nowait(peer_id)
                nursery.start_soon(self._admit_joiners, nursery)
                nursery.start_soon(keep_running, "dht reprovide", self._reprovide_loop)
                log.info("dht started", mode=self.mode, dhts="lan+wan")
                task_status.started()
        finally:
            self._nursery = None
            network.remove_notifee(self)

    # -- routing table -------------------------------------------------------------------------

    async def _admit_joiners(self, nursery: trio.Nursery) -> None:
        async for peer_id in self._join_receive:
            if peer_id in self._admitting:  # one waiter per peer, however many conns;
                self._rejoined.add(peer_id)  # it looks again once done (see _admit)
                continue
            self._admitting.add(peer_id)
            nursery.start_soon(self._admit, peer_id)

    async def _admit(self, peer_id: ID) -> None:
        """Add a connected peer to the routing table of each DHT it serves once identify has
        answered (the spec keeps clients out of routing tables)."""
        try:
            await self._admit_checked(peer_id)
        except Exception as exc:  # the edge of this task: one peer, never the node
            log.warning("dht admission failed", peer=str(peer_id), error=repr(exc)[:300])
        finally:
            self._admitting.discard(peer_id)
            if peer_id in self._rejoined:  # connected again while it waited: look again
                self._rejoined.discard(peer_id)
                with contextlib.suppress(trio.WouldBlock):
                    self._join_send.send_nowait(peer_id)

    async def _admit_checked(self, peer_id: ID) -> None:
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
            for kad in self.kads:
                assert isinstance(kad, _KadDHT)
                if not kad.view.admits(peer_id):
                    # A client that queried us before identify answered got in unchecked.
                    kad.routing_table.remove_peer(peer_id)
                elif await kad.add_peer(peer_id):
                    log.debug("dht peer added", peer=str(peer_id), dht=kad.name)
                    self._table_ready.set()
            return
        log.info("no identify answer; peer left out of the routing table", peer=str(peer_id))

    def routing_table_peers(self) -> list[ID]:
        """Peers in either routing table, each once."""
        return list(dict.fromkeys(p for k in self.kads for p in k.routing_table.get_peer_ids()))

    # -- content routing -----------------------------------------------------------------------

    async def provide(self, cid: CID) -> None:
        """Announce to the closest servers of both DHTs that we have ``cid``; failures are
        logged."""
        key = provider_key(cid)
        accepted: list[bool] = []

        async def one(kad: KadDHT) -> None:
            accepted.append(await kad.provider_store.provide(key))
            # py-libp2p would also re-announce every key ever provided, 10 min after and then
            # every 22 h, removed roots included; the reprovide loop here is the one schedule.
            kad.provider_store.providing_keys.discard(key)

        async with trio.open_nursery() as nursery:
            for kad in self.kads:
                nursery.start_soon(one, kad)
        if self.kads and not any(accepted):
            log.info("provide reached no DHT server", cid=str(cid))

    async def find_providers(self, cid: CID, limit: int = 20) -> AsyncIterator[PeerInfo]:
        """Peers that announced ``cid``, each once, never us, each with an address to dial.

        The LAN DHT is asked first (an empty table answers at once), then the WAN one; each
        provider is passed on as soon as its DHT answers. No nursery here: a caller may stop
        iterating at any time. py-libp2p finishes a whole lookup before it returns, so one
        DHT's results arrive together.
        """
        key = provider_key(cid)
        seen = {self.host.get_id()}
        given = 0
        for kad in self.kads:
            try:
                found = await kad.provider_store.find_providers(key, limit)
            except Exception as exc:  # one DHT failing leaves the other's answers
                log.info("provider lookup failed", cid=str(cid),
                         dht=getattr(kad, "name", "?"), error=repr(exc)[:300])
                continue
            for info in found:
                if info.peer_id in seen:
                    continue
                seen.add(info.peer_id)
                dialable = await self._with_addresses(info)
                if dialable is not None:
                    yield dialable
                    given += 1
                    if given >= limit:
                        return

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
        """The peer's addresses: from a routing table or the peerstore, else a lookup on both
        DHTs at once (the first answer with addresses wins)."""
        if not self.kads:
            return None
        result: list[PeerInfo] = []

        async def one(kad: KadDHT, scope: trio.CancelScope) -> None:
            try:
                info = await kad.find_peer(peer_id)
            except Exception as exc:
                log.info("peer lookup failed", peer=str(peer_id),
                         dht=getattr(kad, "name", "?"), error=repr(exc)[:300])
                return
            if info is not None and info.addrs:
                result.append(info)
                scope.cancel()

        async with trio.open_nursery() as nursery:
            for kad in self.kads:
                nursery.start_soon(one, kad, nursery.cancel_scope)
        return result[0] if result else None

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


class PinnedRoots(Protocol):
    """What ProvideRoots needs of the store: its pin roots now and each change later."""

    def pins(self) -> Mapping[str, Any]: ...

    def add_pin_listener(self, listener: Callable[[CID, bool], None]) -> None: ...


class ProvideRoots:
    """Announces the store's pinned roots on the DHT, and every root pinned or unpinned later
    (``ipfs add`` pins its root, so what we add is found by others)."""

    name = "provide-roots"

    def __init__(self, dht: Dht, store: Callable[[], PinnedRoots]) -> None:
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
