"""QUIC-v1 connections between our daemons are shown by `swarm peers`, counted in the
metrics and trimmed by the connection manager like TCP ones."""

from __future__ import annotations

import socket
from collections.abc import Callable

import multiaddr
import pytest
from helpers import Daemon, wait_until

from ipfs_kit_node.client import Client
from ipfs_kit_node.errors import ListenError
from ipfs_kit_node.host import check_listen_addresses

MakeDaemon = Callable[..., Daemon]
QUIC = "/ip4/127.0.0.1/udp/0/quic-v1"


def _quic_addr(d: Daemon) -> str:
    return next(a for a in d.api("id")["Addresses"] if "/quic-v1/" in a)


def _metrics(d: Daemon) -> str:
    with Client(d.repo / "api.sock", repo=d.repo) as client:
        return client.http_get("/metrics").decode()


def test_quic_connections_are_listed_counted_and_trimmed(daemon: MakeDaemon) -> None:
    others = [daemon(name=f"p{i}").start(listen=QUIC) for i in range(5)]
    center = daemon(name="center").start(listen=QUIC, env={
        "IPFS_KIT_CONNMGR_LOW_WATER": "2", "IPFS_KIT_CONNMGR_HIGH_WATER": "3",
        "IPFS_KIT_CONNMGR_GRACE_PERIOD": "0s",
    })
    assert all("/tcp/" not in a for a in center.api("id")["Addresses"])
    first = others[0].cli("swarm", "connect", _quic_addr(center))
    assert first.returncode == 0, first.stderr + center.log()[-2000:]

    def seen() -> dict[str, dict[str, str]]:
        return {p["Peer"]: p for p in center.api("swarm/peers")["Peers"]}

    # The dialler returns once it is connected; the center registers the inbound connection
    # (and its gauge) on its own time.
    assert wait_until(lambda: seen().get(others[0].peer_id, {}).get("Addr"), timeout=30), \
        seen()
    assert "/quic-v1" in seen()[others[0].peer_id]["Addr"], seen()
    assert wait_until(lambda: "ipfs_kit_peers 1.0" in _metrics(center), timeout=30), \
        [line for line in _metrics(center).splitlines() if "ipfs_kit_peers" in line]
    for peer in others[1:]:
        peer.cli("swarm", "connect", _quic_addr(center))

    def peers() -> set[str]:
        return {p["Peer"] for p in center.api("swarm/peers")["Peers"]}

    assert wait_until(lambda: len(peers()) <= 3, timeout=30), peers()


def test_a_quic_port_in_use_is_named() -> None:
    """py-libp2p would log the failed listen and start with no QUIC address at all."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        addr = f"/ip4/127.0.0.1/udp/{taken.getsockname()[1]}/quic-v1"
        with pytest.raises(ListenError, match="quic-v1"):
            check_listen_addresses([multiaddr.Multiaddr(addr)])
