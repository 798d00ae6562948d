"""The DHT service on real py-libp2p hosts over loopback, in one process: provider records
travel through a bootstrap server, lookups are de-duplicated, connected servers join the
routing table, mode "none" is inert, and shutdown is quick.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import multiaddr
import trio
from libp2p.abc import IHost
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.peer.peerstore import PeerStoreError
from multiformats import CID, multihash

from ipfs_kit_node.config import ConnMgrSection
from ipfs_kit_node.host import build_host
from ipfs_kit_node.protocols.dht import (
    KAD_PROTOCOL,
    LAN_KAD_PROTOCOL,
    Dht,
    is_public,
    provider_key,
)

LOOPBACK = "/ip4/127.0.0.1/tcp/0"


def random_cid(version: int = 1) -> CID:
    digest = multihash.digest(os.urandom(32), "sha2-256")
    if version == 0:
        return CID("base58btc", 0, "dag-pb", digest)
    return CID("base32", 1, "raw", digest)


@dataclass
class Peer:
    host: IHost
    dht: Dht
    nursery: trio.Nursery
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    stopped: trio.Event = field(default_factory=trio.Event)

    @property
    def id(self) -> ID:
        return self.host.get_id()

    async def start_dht(self) -> None:
        await self.nursery.start(self._run_dht)

    async def _run_dht(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        try:
            with self.scope:
                await self.dht.run(task_status=task_status)
        finally:
            self.stopped.set()

    async def stop_dht(self) -> float:
        """Cancel the DHT service; how long it took to wind down."""
        started = time.monotonic()
        self.scope.cancel()
        await self.stopped.wait()
        return time.monotonic() - started

    async def connect(self, other: Peer) -> None:
        with trio.fail_after(20):
            await self.host.connect(PeerInfo(other.id, other.host.get_addrs()))

    def in_table(self, other: Peer) -> bool:
        return other.id in self.dht.routing_table_peers()


@asynccontextmanager
async def network(*modes: str, start_dht: bool = True, **dht_args: Any
                  ) -> AsyncIterator[list[Peer]]:
    """One host (and Dht) per mode, all listening on loopback; torn down on exit."""
    async with trio.open_nursery() as nursery:
        peers = [await nursery.start(_host, mode, dht_args) for mode in modes]
        if start_dht:
            for peer in peers:
                await peer.start_dht()
        yield peers
        nursery.cancel_scope.cancel()


async def _host(mode: str, dht_args: dict[str, Any], *,
                task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    host = build_host(create_new_key_pair(), [LOOPBACK], ConnMgrSection())
    async with host.run([multiaddr.Multiaddr(LOOPBACK)]), trio.open_nursery() as nursery:
        task_status.started(Peer(host, Dht(host, mode, **dht_args), nursery))
        await trio.sleep_forever()


async def until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


def addrs_of(host: IHost, peer_id: ID) -> list[multiaddr.Multiaddr]:
    try:
        return list(host.get_peerstore().addrs(peer_id))
    except PeerStoreError:
        return []


async def collect(dht: Dht, cid: CID) -> list[PeerInfo]:
    return [info async for info in dht.find_providers(cid)]


# -- content routing ---------------------------------------------------------------------------

async def test_provider_found_through_bootstrap_server() -> None:
    async with network("dhtserver", "dhtclient", "dhtclient") as (boot, provider, finder):
        await provider.connect(boot)
        await finder.connect(boot)
        await until(lambda: provider.in_table(boot) and finder.in_table(boot))
        cid = random_cid()

        await provider.dht.provide(cid)
        # The record is keyed by the multihash, as Kubo and Helia key it. ADD_PROVIDER is
        # fire-and-forget: provide() returns once sent, so wait for the server to store it.
        assert provider_key(cid) == bytes(cid.digest)
        assert boot.dht.lan is not None
        store = boot.dht.lan.provider_store
        await until(lambda: [p.peer_id for p in store.get_providers(bytes(cid.digest))]
                    == [provider.id])

        started = time.monotonic()
        with trio.fail_after(20):
            found = await collect(finder.dht, cid)
        elapsed = time.monotonic() - started
        assert [info.peer_id for info in found] == [provider.id], elapsed
        assert found[0].addrs
        assert provider.id not in finder.host.get_connected_peers()

        # The addresses are in the finder's peerstore: a dial by peer ID alone works.
        with trio.fail_after(20):
            await finder.host.connect(PeerInfo(provider.id, []))
        assert provider.id in finder.host.get_connected_peers()


async def test_cidv0_and_cidv1_share_providers() -> None:
    async with network("dhtserver", "dhtclient", "dhtclient") as (boot, provider, finder):
        await provider.connect(boot)
        await finder.connect(boot)
        await until(lambda: provider.in_table(boot) and finder.in_table(boot))
        v0 = random_cid(version=0)
        v1 = CID("base32", 1, "dag-pb", v0.digest)

        await provider.dht.provide(v1)
        assert boot.dht.lan is not None
        store = boot.dht.lan.provider_store
        await until(lambda: bool(store.get_providers(bytes(v0.digest))))
        with trio.fail_after(20):
            found = await collect(finder.dht, v0)
        assert [info.peer_id for info in found] == [provider.id]


async def test_providers_are_deduplicated() -> None:
    async with network("dhtserver", "dhtserver", "dhtclient", "dhtclient", "dhtclient") as (
        s1, s2, provider, raw_finder, finder
    ):
        await s1.connect(s2)
        for peer in (provider, raw_finder, finder):
            await peer.connect(s1)
            await peer.connect(s2)
        await until(lambda: all(p.in_table(s1) and p.in_table(s2)
                                for p in (provider, raw_finder, finder)))
        cid = random_cid()
        await provider.dht.provide(cid)
        await until(lambda: all(
            s.dht.lan is not None and s.dht.lan.provider_store.get_providers(bytes(cid.digest))
            for s in (s1, s2)))

        # py-libp2p itself returns the provider once per server that knew it...
        assert raw_finder.dht.lan is not None
        raw = await raw_finder.dht.lan.provider_store.find_providers(bytes(cid.digest))
        assert [p.peer_id for p in raw] == [provider.id, provider.id]
        # ...the service yields it once.
        with trio.fail_after(20):
            found = await collect(finder.dht, cid)
        assert [info.peer_id for info in found] == [provider.id]


async def test_unknown_cid_has_no_providers() -> None:
    async with network("dhtserver", "dhtclient") as (boot, finder):
        await finder.connect(boot)
        await until(lambda: finder.in_table(boot))
        with trio.fail_after(20):
            assert await collect(finder.dht, random_cid()) == []


async def test_roots_are_reprovided() -> None:
    async with network("dhtserver", "dhtclient", reprovide_interval=0.3) as (boot, provider):
        early, late = random_cid(), random_cid()
        provider.dht.add_provided(early)
        await provider.connect(boot)
        assert boot.dht.lan is not None
        store = boot.dht.lan.provider_store

        def known(cid: CID) -> bool:
            return any(p.peer_id == provider.id for p in store.get_providers(bytes(cid.digest)))

        await until(lambda: known(early))  # provided once the table had a server in it
        provider.dht.add_provided(late)
        await until(lambda: known(late))  # provided at once, not at the next round
        store.providers.clear()
        await until(lambda: known(early) and known(late))  # the next round
        assert provider.dht.provided() == [early, late]
        provider.dht.remove_provided(early)
        assert provider.dht.provided() == [late]


# -- peer routing ------------------------------------------------------------------------------

async def test_find_peer_through_bootstrap_server() -> None:
    async with network("dhtserver", "dhtserver", "dhtclient") as (boot, target, finder):
        await target.connect(boot)
        await finder.connect(boot)
        await until(lambda: finder.in_table(boot) and boot.in_table(target))
        assert not addrs_of(finder.host, target.id)

        with trio.fail_after(20):
            info = await finder.dht.find_peer(target.id)
        assert info is not None and info.peer_id == target.id
        assert {str(a) for a in target.host.get_addrs()} <= {str(a) for a in info.addrs}

        with trio.fail_after(20):
            stranger = build_host(create_new_key_pair(), [LOOPBACK], ConnMgrSection())
            assert await finder.dht.find_peer(stranger.get_id()) is None


# -- routing table -----------------------------------------------------------------------------

async def test_connected_servers_join_the_routing_table() -> None:
    async with network("dhtserver", "dhtserver", "dhtclient", "dhtserver",
                       start_dht=False) as (hub, server, client, early):
        await early.connect(hub)  # before either DHT started
        for peer in (hub, server, client, early):
            await peer.start_dht()
        await server.connect(hub)  # inbound for the hub
        await client.connect(hub)
        await until(lambda: hub.in_table(server) and hub.in_table(early))
        await until(lambda: server.in_table(hub) and client.in_table(hub) and early.in_table(hub))
        # A client does not serve kad, so it stays out, even after it queried the hub (bare
        # py-libp2p adds any peer that opens a kad stream).
        assert KAD_PROTOCOL not in client.host.get_mux().get_protocols()
        assert LAN_KAD_PROTOCOL not in client.host.get_mux().get_protocols()
        with trio.fail_after(20):
            assert await collect(client.dht, random_cid()) == []
        await trio.sleep(0.1)
        assert not hub.in_table(client)
        assert set(hub.dht.routing_table_peers()) == {server.id, early.id}


# -- mode "none" and lifecycle -----------------------------------------------------------------

async def test_mode_none_is_inert() -> None:
    async with network("dhtserver", "none") as (boot, inert):
        assert inert.dht.lan is None and inert.dht.wan is None
        assert KAD_PROTOCOL not in inert.host.get_mux().get_protocols()
        assert LAN_KAD_PROTOCOL not in inert.host.get_mux().get_protocols()
        await inert.connect(boot)
        await until(lambda: boot.id in inert.host.get_connected_peers())
        cid = random_cid()
        inert.dht.add_provided(cid)
        await inert.dht.provide(cid)
        assert await collect(inert.dht, cid) == []
        assert await inert.dht.find_peer(boot.id) is None
        assert inert.dht.routing_table_peers() == []
        assert boot.dht.lan is not None
        assert not boot.dht.lan.provider_store.get_providers(bytes(cid.digest))
        took = await inert.stop_dht()
        print(f"\nmode none: DHT stopped in {took:.3f} s")
        assert took < 10


async def test_shutdown_is_fast() -> None:
    async with network("dhtserver", "dhtserver", "dhtclient", reprovide_interval=0.05) as (
        boot, server, client
    ):
        await server.connect(boot)
        await client.connect(boot)
        await until(lambda: server.in_table(boot) and client.in_table(boot))
        for _ in range(3):
            server.dht.add_provided(random_cid())
        await trio.sleep(0.2)  # reprovide rounds and lookups under way
        for peer in (client, server, boot):
            # Liveness only (cancelled, not waiting out a lookup): the figure is printed.
            took = await peer.stop_dht()
            print(f"\nDHT stopped in {took:.3f} s")
            assert took < 10
        # The notifee is gone with the service: new connections are not queued.
        assert boot.dht not in boot.host.get_network().notifees  # type: ignore[attr-defined]


# -- dual DHT ----------------------------------------------------------------------------------

def test_address_classes() -> None:
    """Kubo's split: private, loopback and link-local go to the LAN DHT, the rest to the WAN."""
    for private in ("/ip4/127.0.0.1/tcp/1", "/ip4/10.1.2.3/tcp/1", "/ip4/192.168.1.9/udp/1/quic-v1",
                    "/ip6/::1/tcp/1", "/ip6/fe80::1/tcp/1", "/ip4/172.16.0.1/tcp/1"):
        assert is_public(multiaddr.Multiaddr(private)) is False, private
    for public in ("/ip4/8.8.8.8/tcp/4001", "/ip6/2001:4860:4860::8888/udp/4001/quic-v1",
                   "/dns4/example.com/tcp/4001"):
        assert is_public(multiaddr.Multiaddr(public)) is True, public


async def test_loopback_peers_join_the_lan_dht_only() -> None:
    """Both DHTs are served; on loopback a peer serving both is a LAN peer, as in Kubo, and the
    WAN DHT neither holds nor queries it."""
    async with network("dhtserver", "dhtserver") as (a, b):
        for proto in (KAD_PROTOCOL, LAN_KAD_PROTOCOL):
            assert proto in a.host.get_mux().get_protocols()
        await a.connect(b)
        assert a.dht.lan is not None and a.dht.wan is not None
        await until(lambda: b.id in a.dht.lan.routing_table.get_peer_ids())  # type: ignore[union-attr]
        assert b.id not in a.dht.wan.routing_table.get_peer_ids()
        assert b.id not in a.dht.wan.host.get_connected_peers()  # the WAN's view of the host
        assert b.id in a.dht.lan.host.get_connected_peers()


async def test_peers_without_a_dht_are_never_queried() -> None:
    """Before: py-libp2p asked every connected peer, DHT or not (an error line per attempt)."""
    async with network("dhtclient", "none") as (client, plain):
        await client.connect(plain)
        await until(lambda: bool(client.host.get_peerstore().get_protocols(plain.id)))
        assert client.dht.lan is not None and client.dht.wan is not None
        for kad in (client.dht.lan, client.dht.wan):
            assert plain.id not in kad.host.get_connected_peers()
            assert plain.id not in kad.host.get_peerstore().peer_ids()
        opened: list[Any] = []
        original = client.host.new_stream

        async def spy(peer_id: ID, protocols: Any) -> Any:
            opened.append((peer_id, list(protocols)))
            return await original(peer_id, protocols)

        client.host.new_stream = spy  # type: ignore[method-assign]
        with trio.fail_after(20):
            assert await collect(client.dht, random_cid()) == []
            assert await client.dht.find_peer(plain.id) is not None  # known: no query needed
        assert not [o for o in opened if o[0] == plain.id], opened


async def test_a_record_provided_on_either_dht_is_answered_on_both() -> None:
    """A Helia peer on a LAN provides on the WAN DHT only; our LAN peers still find it."""
    async with network("dhtserver", "dhtclient") as (server, finder):
        await finder.connect(server)
        await until(lambda: finder.in_table(server))
        cid = random_cid()
        assert server.dht.wan is not None
        server.dht.wan.provider_store.add_provider(
            provider_key(cid), PeerInfo(server.id, server.host.get_addrs()))
        # Found through the LAN DHT (the only one holding the server on loopback).
        found = await collect(finder.dht, cid)
        assert [info.peer_id for info in found] == [server.id]


class _RecordingStream:
    """A test double for a libp2p stream: records what is written."""

    def __init__(self) -> None:
        self.written = b""

    async def write(self, data: bytes) -> None:
        self.written += data


async def test_add_provider_is_never_answered() -> None:
    """Go sends ADD_PROVIDER and reads no answer on a stream it reuses: an answer from us was
    read as the answer to its next request (Kubo found no providers for a minute)."""
    import varint  # the package py-libp2p's DHT writes its lengths with
    from libp2p.kad_dht.pb.kademlia_pb2 import Message

    from ipfs_kit_node.protocols.dht.service import _NoAddProviderEcho

    raw = _RecordingStream()
    stream = _NoAddProviderEcho(raw)  # type: ignore[arg-type]
    for kind in (Message.MessageType.ADD_PROVIDER, Message.MessageType.GET_PROVIDERS):
        message = Message(type=kind, key=b"k" * 200)  # a length of two varint bytes
        body = message.SerializeToString()
        await stream.write(varint.encode(len(body)))
        await stream.write(body)
    answer = Message(type=Message.MessageType.GET_PROVIDERS, key=b"k" * 200).SerializeToString()
    assert raw.written == varint.encode(len(answer)) + answer
