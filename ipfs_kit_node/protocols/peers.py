"""Who we are connected to, how we found them, and what identify told us.

py-libp2p 0.8.1 runs identify on connect but keeps only addresses and protocols; it drops
the agent version. The peer book asks identify once more for each new connection and keeps the
whole answer, plus the direction and how the peer was found (dial, inbound, bootstrap, mdns,
dht, or routing for the DHT's own lookups), for ``swarm peers``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import multiaddr
import trio
from libp2p.abc import IHost, INetConn, INetStream, INetwork
from libp2p.crypto.serialization import deserialize_public_key
from libp2p.identity.identify.identify import ID as IDENTIFY_PROTOCOL
from libp2p.identity.identify.pb.identify_pb2 import Identify
from libp2p.peer.id import ID
from libp2p.utils.varint import read_length_prefixed_protobuf

from ..logs import get_logger
from ..service import TaskStatus
from .notifee import ConnectionNotifee

log = get_logger(__name__)

IDENTIFY_TIMEOUT = 10.0
MAX_IDENTIFY_BYTES = 64 * 1024
IDENTIFY_RETRY_DELAYS = (0.05, 0.25, 0.5, 1.0, 2.0)


@dataclass(frozen=True)
class PeerRecord:
    peer_id: ID
    direction: str  # "inbound" | "outbound"
    address: str  # the remote transport address of the connection
    found_by: str
    connected_at: float
    agent_version: str | None = None
    protocol_version: str | None = None
    protocols: tuple[str, ...] = ()
    listen_addrs: tuple[str, ...] = ()
    identified: trio.Event = field(default_factory=trio.Event, compare=False)


def parse_identify(data: bytes, peer_id: ID) -> Identify:
    """Decode an identify answer; refuse a public key that is not the peer's."""
    msg = Identify()
    msg.ParseFromString(data)
    if msg.HasField("public_key"):
        key = deserialize_public_key(msg.public_key)
        if ID.from_pubkey(key) != peer_id:
            raise ValueError("identify public key does not match the peer ID")
    return msg


def _addr_text(raw: bytes) -> str | None:
    try:
        return str(multiaddr.Multiaddr(raw))
    except Exception:
        return None


QUIC_V1 = 0x00000001


def _address_text(conn: INetConn, addr: multiaddr.Multiaddr) -> str:
    """The connection's remote address; QUIC-v1 named as such (py-libp2p's QUIC listener
    calls every remote address /quic, the draft-29 name, whatever the version spoken)."""
    text = str(addr)
    quic = getattr(conn.muxed_conn, "_quic", None)
    if text.endswith("/quic") and getattr(quic, "_version", None) == QUIC_V1:
        text += "-v1"
    return text


MAX_FOUND_BY = 4096  # notes on peers being dialled; a dial that fails leaves one behind


class PeerBook(ConnectionNotifee):
    """A service: hears connection events from the swarm, identifies new peers."""

    name = "peers"

    def __init__(self, host: IHost) -> None:
        self._host = host
        self._peers: dict[ID, PeerRecord] = {}
        self._found_by: dict[ID, str] = {}
        self._send, self._receive = trio.open_memory_channel[ID](1024)
        host.get_network().register_notifee(self)

    # -- queries -------------------------------------------------------------------------------

    def get(self, peer_id: ID) -> PeerRecord | None:
        return self._peers.get(peer_id)

    def note_found(self, peer_id: ID, how: str) -> None:
        """Say how a peer we are about to dial was found (bootstrap, mdns, dht...).

        Dials that fail leave their note behind: the oldest notes go past ``MAX_FOUND_BY``.
        """
        self._found_by.pop(peer_id, None)
        self._found_by[peer_id] = how
        while len(self._found_by) > MAX_FOUND_BY:
            del self._found_by[next(iter(self._found_by))]

    async def wait_identified(self, peer_id: ID, timeout: float = IDENTIFY_TIMEOUT) -> PeerRecord:
        record = self._peers.get(peer_id)
        if record is None:
            raise KeyError(peer_id)
        with trio.move_on_after(timeout):
            await record.identified.wait()
        return self._peers.get(peer_id, record)

    # -- service -------------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        async with trio.open_nursery() as nursery:
            task_status.started()
            async for peer_id in self._receive:
                nursery.start_soon(self._identify, peer_id)

    async def _identify(self, peer_id: ID) -> None:
        try:
            await self._identify_checked(peer_id)
        except Exception as exc:  # the edge of this task: one peer, never the node
            log.warning("identify handling failed", peer=str(peer_id), error=repr(exc)[:300])

    async def _identify_checked(self, peer_id: ID) -> None:
        record = self._peers.get(peer_id)
        if record is None:
            return
        try:
            msg = await self._ask_identify(peer_id)
        finally:
            record.identified.set()
        if msg is None or peer_id not in self._peers:
            return
        self._peers[peer_id] = replace(
            record,
            agent_version=msg.agent_version or None,
            protocol_version=msg.protocol_version or None,
            protocols=tuple(msg.protocols),
            listen_addrs=tuple(a for a in map(_addr_text, msg.listen_addrs) if a),
            identified=record.identified,
        )
        log.debug("identified", peer=str(peer_id), agent=msg.agent_version)

    async def _ask_identify(self, peer_id: ID) -> Identify | None:
        # The host runs its own identify on connect, and js-libp2p accepts one inbound
        # identify stream at a time: ours goes second, and retries while that one is open.
        for delay in IDENTIFY_RETRY_DELAYS:
            await trio.sleep(delay)
            if not self._host.get_network().get_connections(peer_id):
                return None
            try:
                with trio.fail_after(IDENTIFY_TIMEOUT):
                    stream: INetStream = await self._host.new_stream(
                        peer_id, [IDENTIFY_PROTOCOL]
                    )
                    try:
                        data = await read_length_prefixed_protobuf(
                            stream, use_varint_format=True, max_length=MAX_IDENTIFY_BYTES
                        )
                    finally:
                        await stream.close()
                return parse_identify(data, peer_id)
            except trio.TooSlowError:
                log.info("identify timed out", peer=str(peer_id))
                return None
            except Exception as exc:  # the peer's fault: logged, never fatal
                error = repr(exc)
        log.info("identify failed", peer=str(peer_id), error=error)
        return None

    # -- INotifee ------------------------------------------------------------------------------

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        peer_id = conn.muxed_conn.peer_id
        if peer_id in self._peers:
            return
        direction = str(getattr(getattr(conn, "direction", None), "name", "unknown")).lower()
        addrs = [_address_text(conn, a) for a in conn.get_transport_addresses()]
        # Outbound connections nobody announced come from routing: the DHT's own lookups
        # dial the peers they learn about (and py-libp2p's auto-dialer, its peerstore).
        found_by = self._found_by.pop(peer_id,
                                      "inbound" if direction == "inbound" else "routing")
        self._peers[peer_id] = PeerRecord(
            peer_id=peer_id,
            direction=direction,
            address=addrs[0] if addrs else "",
            found_by=found_by,
            connected_at=time.time(),
        )
        try:
            self._send.send_nowait(peer_id)
        except trio.WouldBlock:
            log.warning("identify queue full; peer left unidentified", peer=str(peer_id))

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        peer_id = conn.muxed_conn.peer_id
        if not network.get_connections(peer_id):
            self._peers.pop(peer_id, None)




