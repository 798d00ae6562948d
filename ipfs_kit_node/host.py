"""The py-libp2p host, built with the settings its defaults get wrong for us.

Noise only (the library also accepts plaintext and secio inbound unless told otherwise),
Yamux before mplex, one connection per peer (so connect skips the 250 ms happy-eyeballs wait),
our agent version in identify, and the role's connection-manager watermarks.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Sequence
from importlib.metadata import version

import multiaddr
from libp2p import create_yamux_muxer_option, new_host
from libp2p.abc import IHost
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.identity.identify import identify as _identify
from libp2p.network.config import ConnectionConfig
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport

from . import __version__
from .config import ConnMgrSection
from .errors import ListenError

AGENT_VERSION = f"ipfs-kit-node/{__version__} py-libp2p/{version('libp2p')}"

# py-libp2p 0.8.1's yamux grants one read size of credit beyond its own 16 MiB window limit
# (yamux.py, _auto_tune_and_send_window_update, the partial-slack branch counts the bytes just
# read twice); js-libp2p's yamux sends DATA frames as large as the whole window, so a frame of
# 16 MiB + one read trips py's own "oversized frame" guard and the connection dies mid-fetch
# (seen fetching 1 MiB blocks from Helia). Without hysteresis every window update is an exact
# grow-to, and the credit never exceeds 16 MiB. It is read on every update; an operator can
# still override it.
os.environ.setdefault("PY_YAMUX_DISABLE_HYSTERESIS", "1")

# py-libp2p reads its agent version from this module constant when it answers identify;
# there is no constructor argument for it in 0.8.1.
_identify.AGENT_VERSION = AGENT_VERSION


def connection_config(connmgr: ConnMgrSection) -> ConnectionConfig:
    """Role watermarks over the library defaults; always one connection per peer."""
    cfg = ConnectionConfig(max_connections_per_peer=1)
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
    noise = NoiseTransport(key_pair, noise_privkey=create_x25519_key_pair().private_key)
    return new_host(
        key_pair=key_pair,
        sec_opt={TProtocol(NOISE_PROTOCOL_ID): noise},
        muxer_opt=create_yamux_muxer_option(),
        listen_addrs=[multiaddr.Multiaddr(a) for a in listen],
        connection_config=connection_config(connmgr),
        enable_mDNS=False,
    )


def peer_addresses(host: IHost) -> list[str]:
    """Our listen addresses, each ending in /p2p/<our peer ID>."""
    suffix = f"/p2p/{host.get_id()}"
    return [a if a.endswith(suffix) else a + suffix for a in map(str, host.get_addrs())]


def check_listen_addresses(listen: Sequence[multiaddr.Multiaddr]) -> None:
    """ListenError naming the first TCP address another program holds.

    py-libp2p logs a failed listen and carries on with no address at all ("node ready" with
    nothing to dial); we would rather not start.
    """
    for addr in listen:
        protocols = [p.name for p in addr.protocols()]
        if len(protocols) < 2 or protocols[0] not in ("ip4", "ip6") or protocols[1] != "tcp":
            continue
        port = int(addr.value_for_protocol("tcp"))
        if port == 0:
            continue
        family = socket.AF_INET if protocols[0] == "ip4" else socket.AF_INET6
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((addr.value_for_protocol(protocols[0]), port))
            except OSError as exc:
                reason = ("the port is in use by another program" if exc.errno == errno.EADDRINUSE
                          else exc.strerror or str(exc))
                raise ListenError(str(addr), reason) from None
