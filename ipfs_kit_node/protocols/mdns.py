"""mDNS discovery (libp2p spec: ``_p2p._udp.local``, ``dnsaddr=`` TXT records), dialing what
it finds.

zeroconf runs its own threads (the one place the node has threads, because the library
forces them); its callbacks only parse and hand results to the trio loop with
``TrioToken.run_sync_soon``, which is thread-safe. All dialing happens in trio.
py-libp2p's own mDNS module only fills the peerstore from zeroconf's thread and never dials.
"""

from __future__ import annotations

import contextlib
import ipaddress
import secrets
import socket
from collections.abc import Callable

import multiaddr
import trio
from libp2p.abc import IHost
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from zeroconf import ServiceBrowser, ServiceInfo, ServiceStateChange, Zeroconf

from ..host import interface_ips
from ..logs import get_logger
from ..service import TaskStatus
from .peers import PeerBook

log = get_logger(__name__)

SERVICE_TYPE = "_p2p._udp.local."
MAX_DISCOVERED = 1024


def parse_dnsaddrs(properties: dict[bytes, bytes | None]) -> PeerInfo | None:
    """The peer behind a service's ``dnsaddr=<multiaddr>/p2p/<id>`` TXT records."""
    peer: ID | None = None
    addrs: list[multiaddr.Multiaddr] = []
    for key, value in properties.items():
        if key != b"dnsaddr" or value is None:
            continue
        try:
            addr = multiaddr.Multiaddr(value.decode())
            peer_text = addr.get_peer_id()
            if peer_text is None:
                continue
            this = ID.from_base58(peer_text)
        except Exception:
            continue
        if peer is not None and this != peer:
            continue
        peer = this
        addrs.append(addr.decapsulate_code(multiaddr.protocols.P_P2P))
    return PeerInfo(peer, addrs) if peer is not None and addrs else None


def _txt_records(info: ServiceInfo) -> list[dict[bytes, bytes | None]]:
    # A TXT record may repeat the same key (one dnsaddr per address): read them all.
    out: list[dict[bytes, bytes | None]] = []
    raw = info.text or b""
    pos = 0
    while pos < len(raw):
        length = raw[pos]
        entry = raw[pos + 1:pos + 1 + length]
        pos += 1 + length
        key, _, value = entry.partition(b"=")
        out.append({key: value})
    return out


class MdnsDiscovery:
    """A node service: announce our addresses, dial peers announced on the LAN."""

    name = "mdns"

    def __init__(self, host: IHost, peers: PeerBook, enabled: bool = True) -> None:
        self.host = host
        self.peers = peers
        self.enabled = enabled
        self.discovered: dict[ID, None] = {}  # insertion-ordered, at most MAX_DISCOVERED

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if not self.enabled:
            task_status.started()
            await trio.sleep_forever()
        send, receive = trio.open_memory_channel[PeerInfo](256)
        token = trio.lowlevel.current_trio_token()

        def found(info: PeerInfo) -> None:  # runs in zeroconf's thread
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(_offer, send, info)

        zc = await trio.to_thread.run_sync(Zeroconf)
        service = self._service_info()
        browser: ServiceBrowser | None = None
        try:
            await trio.to_thread.run_sync(zc.register_service, service)
            browser = ServiceBrowser(zc, SERVICE_TYPE, handlers=[self._handler(found)])
            log.info("mDNS announcing", addrs=len(self._addresses()))
            async with trio.open_nursery() as nursery:
                task_status.started()
                async for info in receive:
                    nursery.start_soon(self._dial, info)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(1.0):
                await trio.to_thread.run_sync(_close, zc, browser, service)

    def _handler(self, found: Callable[[PeerInfo], None]
                 ) -> Callable[[Zeroconf, str, str, ServiceStateChange], None]:
        own = str(self.host.get_id())

        def on_change(zeroconf: Zeroconf, service_type: str, name: str,
                      state_change: ServiceStateChange) -> None:
            if state_change not in (ServiceStateChange.Added, ServiceStateChange.Updated):
                return
            info = zeroconf.get_service_info(service_type, name, timeout=2000)
            if info is None:
                return
            for record in _txt_records(info):
                peer = parse_dnsaddrs(record)
                if peer is not None and str(peer.peer_id) != own:
                    found(peer)

        return on_change

    async def _dial(self, info: PeerInfo) -> None:
        if info.peer_id in self.discovered and self.host.get_network().get_connections(
                info.peer_id):
            return
        self.discovered.pop(info.peer_id, None)
        self.discovered[info.peer_id] = None
        while len(self.discovered) > MAX_DISCOVERED:  # a LAN can announce any number of IDs
            del self.discovered[next(iter(self.discovered))]
        if self.host.get_network().get_connections(info.peer_id):
            return
        self.peers.note_found(info.peer_id, "mdns")
        try:
            with trio.fail_after(10):
                await self.host.connect(info)
            log.info("mDNS peer connected", peer=str(info.peer_id))
        except Exception as exc:
            log.info("mDNS peer unreachable", peer=str(info.peer_id), error=str(exc))

    def _addresses(self) -> list[multiaddr.Multiaddr]:
        """Our dialable addresses: wildcard listeners expanded to this host's interfaces."""
        out = []
        for addr in self.host.get_addrs():
            addr = addr.decapsulate_code(multiaddr.protocols.P_P2P)
            host_ip = addr.value_for_protocol("ip4") if "/ip4/" in str(addr) else None
            if host_ip == "0.0.0.0":  # keep the rest (/tcp/P or /udp/P/quic-v1) as it is
                rest = str(addr).removeprefix("/ip4/0.0.0.0")
                out += [multiaddr.Multiaddr(f"/ip4/{ip}{rest}") for ip in _local_ipv4()]
            else:
                out.append(addr)
        return out

    def _service_info(self) -> ServiceInfo:
        own = self.host.get_id()
        addrs = self._addresses()
        tcp = [a for a in addrs if "/tcp/" in str(a)]
        port = int(tcp[0].value_for_protocol("tcp")) if tcp else 4001
        ips = [socket.inet_aton(str(a.value_for_protocol("ip4"))) for a in addrs
               if "/ip4/" in str(a)]
        text = b"".join(
            bytes([len(entry)]) + entry
            for entry in (f"dnsaddr={a}/p2p/{own}".encode() for a in addrs)
            if len(entry) < 256
        )
        name = f"{secrets.token_hex(16)}.{SERVICE_TYPE}"
        return ServiceInfo(SERVICE_TYPE, name, port=port, addresses=ips, properties=text)


def _offer(send: trio.MemorySendChannel[PeerInfo], info: PeerInfo) -> None:
    with contextlib.suppress(trio.WouldBlock, trio.ClosedResourceError):
        send.send_nowait(info)


def _close(zc: Zeroconf, browser: ServiceBrowser | None, service: ServiceInfo) -> None:
    with contextlib.suppress(Exception):
        if browser is not None:
            browser.cancel()
        zc.unregister_service(service)
    zc.close()


def _local_ipv4() -> list[str]:
    """Non-loopback IPv4 addresses of this host's interfaces (Linux)."""
    return [ip for ip in interface_ips(socket.AF_INET)
            if not ipaddress.ip_address(ip).is_loopback]
