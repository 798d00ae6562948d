"""The py-libp2p host, built with the settings its defaults get wrong for us.

TCP and QUIC-v1 as Kubo (both dialable whatever we listen on), Noise then TLS 1.3 on TCP (the
library also accepts plaintext and secio inbound unless told otherwise), Yamux before mplex
(Noise and Yamux are our subclasses of the library's, tuned for bulk transfer: ``transport``),
one connection per peer (so connect skips the 250 ms happy-eyeballs wait), our agent version in
identify, and the role's connection-manager watermarks.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Sequence
from importlib.metadata import version

import multiaddr
from libp2p import new_host
from libp2p.abc import IHost
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.identity.identify import identify as _identify
from libp2p.network.config import ConnectionConfig
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.tls.transport import PROTOCOL_ID as TLS_PROTOCOL_ID
from libp2p.security.tls.transport import TLSTransport
from libp2p.stream_muxer.mplex.mplex import MPLEX_PROTOCOL_ID, Mplex
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.transport.quic import connection as _quic_connection
from libp2p.transport.quic.config import QUICTransportConfig
from libp2p.transport.quic.exceptions import QUICStreamClosedError
from libp2p.transport.quic.stream import QUICStream, StreamState, _QUICStreamEOF
from libp2p.transport.quic.transport import QUICTransport
from libp2p.transport.tcp.tcp import TCP

from . import __version__
from .config import ConnMgrSection
from .errors import ListenError
from .transport import NoiseTransport, Yamux
from .transport.multistream import install_fast_multiselect

AGENT_VERSION = f"ipfs-kit-node/{__version__} py-libp2p/{version('libp2p')}"

# Yamux credit: py-libp2p 0.8.1 granted one read size beyond its own 16 MiB window limit (its
# hysteresis branch counted the bytes just read twice), and js-libp2p's window-sized frame then
# tripped py's oversized-frame guard; PY_YAMUX_DISABLE_HYSTERESIS=1 worked around it at the
# cost of one WINDOW_UPDATE per read. Our streams (transport.yamux) grant credit as go-yamux
# does instead, never past the window.

# py-libp2p reads its agent version from this module constant when it answers identify;
# there is no constructor argument for it in 0.8.1.
_identify.AGENT_VERSION = AGENT_VERSION


# QUIC flow-control windows: py-libp2p's 64 KiB per stream held one Bitswap stream to a
# window per round trip; these match go-libp2p's (quic-go: 10 MiB stream, 15 MiB connection).
QUIC_STREAM_WINDOW = 10 * 1024 * 1024
QUIC_CONNECTION_WINDOW = 15 * 1024 * 1024
# py-libp2p resets a QUIC stream nobody has written to for 30 s; Bitswap, gossipsub and the
# task mesh keep streams open and idle between messages (as over Yamux, which has no such
# limit). Our protocol code bounds each read it cares about itself.
QUIC_READ_IDLE = 7 * 24 * 3600.0


class _QuicStream(QUICStream):
    """A QUIC stream whose read side survives the peer's STOP_SENDING (as over Yamux).

    go-libp2p closes the read side of a stream (STOP_SENDING) once it has read a request,
    often before its answer arrives. py-libp2p 0.8.1 then marked one of our outbound streams
    closed both ways, and the answer already on its way was dropped (Kubo's identify answer
    was lost ~2 times in 3 on connections Kubo dialled). Here only our write side ends, what
    the peer sent before its FIN is always read, and then EOF, never a reset.
    """

    async def handle_stop_sending(self, error_code: int) -> None:
        self._write_closed = True
        self._backpressure_event.set()
        async with self._state_lock:
            if self._state != StreamState.RESET:
                self._state = StreamState.CLOSED if self._read_closed \
                    else StreamState.WRITE_CLOSED
        try:  # QUIC answers STOP_SENDING with RESET_STREAM (of our sending side only)
            self._connection._quic.reset_stream(int(self.stream_id), error_code)
            await self._connection._transmit()
        except Exception:  # the connection is going away: nothing left to tell
            pass

    def _peer_stopped_reading(self) -> bool:
        """aioquic resets our sending side on STOP_SENDING before the library hears of it."""
        stream = self._connection._quic._streams.get(self._stream_id)
        return (self._state != StreamState.RESET and stream is not None
                and stream.sender._reset_error_code is not None)

    async def write(self, data: bytes) -> None:
        # Go sends a one-off message (a Bitswap reply with blocks) with lazy multistream
        # negotiation and closes the stream at once, STOP_SENDING included: the library then
        # failed writing our protocol ack and reset the stream, losing the message. Like Go
        # over Yamux, what we write to a peer that stopped reading is dropped.
        if self._peer_stopped_reading():
            self._write_closed = True
            return
        await super().write(data)

    async def close_write(self) -> None:
        if self._peer_stopped_reading():
            self._write_closed = True
            return
        await super().close_write()

    async def read(self, n: int | None = None) -> bytes:
        # The library checks its buffer, then waits for a lock, then reads "closed" as the
        # end: data and FIN that arrive in between were lost (EOF with 1,278 bytes buffered).
        if self._read_closed and self._state != StreamState.RESET:
            if not self._receive_buffer:
                raise _QUICStreamEOF()
            return self._extract_data_from_buffer(-1 if n is None else n)
        try:
            return await super().read(n)
        except (_QUICStreamEOF, QUICStreamClosedError):
            if self._state == StreamState.RESET or not self._read_closed:
                raise
            if not self._receive_buffer:
                raise _QUICStreamEOF() from None
            return self._extract_data_from_buffer(-1 if n is None else n)


# py-libp2p's QUIC connection builds its streams from this module name.
_quic_connection.QUICStream = _QuicStream  # type: ignore[attr-defined]


def connection_config(connmgr: ConnMgrSection) -> ConnectionConfig:
    """Role watermarks over the library defaults; always one connection per peer."""
    cfg = QUICTransportConfig(max_connections_per_peer=1, STREAM_READ_TIMEOUT=QUIC_READ_IDLE,
                              stream_window=QUIC_STREAM_WINDOW,
                              connection_window=QUIC_CONNECTION_WINDOW)
    if connmgr.low_water is not None:
        cfg.low_watermark = connmgr.low_water
        cfg.min_connections = min(cfg.min_connections, connmgr.low_water)
    if connmgr.high_water is not None:
        cfg.high_watermark = connmgr.high_water
        cfg.max_connections = max(cfg.max_connections, connmgr.high_water)
    if connmgr.grace_period is not None:
        cfg.grace_period = connmgr.grace_period
    return cfg


def build_host(
    key_pair: KeyPair, listen: Sequence[str], connmgr: ConnMgrSection
) -> IHost:
    """Noise first, TLS second (Kubo offers both; plaintext and secio are refused); TCP and
    QUIC-v1 transports, so either kind of address can be dialled whatever we listen on."""
    noise = NoiseTransport(key_pair, noise_privkey=create_x25519_key_pair().private_key)
    config = connection_config(connmgr)
    assert isinstance(config, QUICTransportConfig)
    host = new_host(
        key_pair=key_pair,
        sec_opt={TProtocol(NOISE_PROTOCOL_ID): noise,
                 TProtocol(TLS_PROTOCOL_ID): TLSTransport(key_pair)},
        # Ours (transport/): the library's protocols, with writes batched and woken by
        # credit instead of polled (Bitswap to Kubo ran at half of Kubo's own speed).
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux, TProtocol(MPLEX_PROTOCOL_ID): Mplex},
        listen_addrs=[multiaddr.Multiaddr(a) for a in listen],
        transports=[TCP(), QUICTransport(key_pair.private_key, config=config)],
        connection_config=config,
        enable_mDNS=False,
    )
    install_fast_multiselect(host)  # inbound streams negotiated in one write
    return host


def peer_addresses(host: IHost) -> list[str]:
    """Our dialable addresses, each ending in /p2p/<our peer ID>: a wildcard listener
    (0.0.0.0, ::) is shown as each of this host's addresses, loopback first, as Kubo's
    `ipfs id` does; nobody can dial 0.0.0.0, and these go to Kubo and masters as ours."""
    suffix = f"/p2p/{host.get_id()}"
    out: list[str] = []
    ips: dict[int, list[str]] = {}  # read once a call, and only for a wildcard listener
    for addr in map(str, host.get_addrs()):
        addr = addr.removesuffix(suffix)
        for wildcard, family in (("/ip4/0.0.0.0/", socket.AF_INET),
                                 ("/ip6/::/", socket.AF_INET6)):
            if addr.startswith(wildcard):
                rest = addr.removeprefix(wildcard)
                name = wildcard.split("/")[1]
                if family not in ips:
                    ips[family] = interface_ips(family)
                out += [f"/{name}/{ip}/{rest}{suffix}" for ip in ips[family]]
                break
        else:
            out.append(addr + suffix)
    return list(dict.fromkeys(out))


def origin_addresses(host: IHost) -> list[str]:
    """``peer_addresses`` for other hosts (the origins given to Kubo, Cluster and with a
    task's inputs): loopback ones last. Kubo's pin target dials the first alone, a remote
    peer dialling 127.0.0.1 reaches itself, and a list cut short keeps the useful ones."""
    addrs = peer_addresses(host)
    return sorted(addrs, key=lambda a: a.startswith(("/ip4/127.", "/ip6/::1/")))


def interface_ips(family: int) -> list[str]:
    """This host's addresses of one family, loopback first (Linux: SIOCGIFADDR for IPv4,
    /proc/net/if_inet6 for IPv6)."""
    import contextlib
    import fcntl
    import ipaddress
    import struct

    ips: list[str] = []
    if family == socket.AF_INET:
        with contextlib.suppress(OSError):
            for _, name in socket.if_nameindex():
                with contextlib.suppress(OSError), \
                        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                    packed = fcntl.ioctl(probe.fileno(), 0x8915,  # SIOCGIFADDR
                                         struct.pack("256s", name[:15].encode()))
                    ips.append(socket.inet_ntoa(packed[20:24]))
    else:
        with contextlib.suppress(OSError), open("/proc/net/if_inet6") as table:
            for line in table:
                raw = line.split()[0]
                ip = ipaddress.IPv6Address(bytes.fromhex(raw))
                if not ip.is_link_local:  # needs a zone to dial
                    ips.append(str(ip))
    loop = "127.0.0.1" if family == socket.AF_INET else "::1"
    return [loop, *sorted(set(ips) - {loop})]


def check_listen_addresses(listen: Sequence[multiaddr.Multiaddr]) -> None:
    """ListenError naming the first TCP or UDP (QUIC) address another program holds.

    py-libp2p logs a failed listen and carries on with no address at all ("node ready" with
    nothing to dial); we would rather not start.
    """
    for addr in listen:
        protocols = [p.name for p in addr.protocols()]
        if len(protocols) < 2 or protocols[0] not in ("ip4", "ip6") \
                or protocols[1] not in ("tcp", "udp"):
            continue
        port = int(addr.value_for_protocol(protocols[1]))
        if port == 0:
            continue
        family = socket.AF_INET if protocols[0] == "ip4" else socket.AF_INET6
        kind = socket.SOCK_STREAM if protocols[1] == "tcp" else socket.SOCK_DGRAM
        with socket.socket(family, kind) as probe:
            if kind == socket.SOCK_STREAM:  # TIME_WAIT leftovers do not hold a TCP port
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((addr.value_for_protocol(protocols[0]), port))
            except OSError as exc:
                reason = ("the port is in use by another program" if exc.errno == errno.EADDRINUSE
                          else exc.strerror or str(exc))
                raise ListenError(str(addr), reason) from None
