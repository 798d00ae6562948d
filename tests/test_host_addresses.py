"""The addresses we hand to other hosts (the origins given to Kubo before a remote pin, to
Cluster, with a task's inputs) put this host's non-loopback addresses first: Kubo's pin
target dials the first one only, and a remote Kubo asked to connect to 127.0.0.1 dials
itself. ``id`` keeps Kubo's order (loopback first). The host here is a stand-in (named so):
listening on 0.0.0.0 for real would open the test machine to its network."""

from __future__ import annotations

import ipaddress
import socket
from types import SimpleNamespace

import multiaddr
import pytest

from ipfs_kit_node.host import interface_ips, origin_addresses, peer_addresses
from ipfs_kit_node.roles.mesh import own_origins

PEER = "12D3KooWGRUVh8e9MzFVDmrEmF1uF5pP8mkbvXojuTTuFbDQPi2y"


class StandInHost:
    """Only what the address functions read: an ID and listen addresses."""

    def __init__(self, *addrs: str) -> None:
        self._addrs = [multiaddr.Multiaddr(a) for a in addrs]

    def get_id(self) -> str:
        return PEER

    def get_addrs(self) -> list[multiaddr.Multiaddr]:
        return self._addrs


def _lan_ipv4() -> list[str]:
    ips = [ip for ip in interface_ips(socket.AF_INET) if not ipaddress.ip_address(ip).is_loopback]
    if not ips:
        pytest.skip("this host has no non-loopback IPv4 address")
    return ips


def test_origins_put_this_hosts_addresses_before_loopback() -> None:
    lan = _lan_ipv4()
    host = StandInHost("/ip4/0.0.0.0/tcp/4102", "/ip4/0.0.0.0/udp/4102/quic-v1")
    shown = peer_addresses(host)  # type: ignore[arg-type]
    assert shown[0] == f"/ip4/127.0.0.1/tcp/4102/p2p/{PEER}"  # as Kubo's ipfs id
    given = origin_addresses(host)  # type: ignore[arg-type]
    assert sorted(given) == sorted(shown)
    assert given[0] == f"/ip4/{lan[0]}/tcp/4102/p2p/{PEER}", given
    assert not [a for a in given[:len(given) - 2] if "/127.0.0.1/" in a], given
    origins = own_origins(SimpleNamespace(host=host))  # type: ignore[arg-type]
    assert origins[0] == given[0], origins


def test_loopback_only_stays_as_it_is() -> None:
    host = StandInHost("/ip4/127.0.0.1/tcp/4102")
    assert origin_addresses(host) == [f"/ip4/127.0.0.1/tcp/4102/p2p/{PEER}"]  # type: ignore[arg-type]
