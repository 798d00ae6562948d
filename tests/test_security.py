"""Only Noise is accepted: a peer offering plaintext or secio alone cannot connect."""

from __future__ import annotations

from collections.abc import Callable

import multiaddr
import pytest
import trio
from helpers import Daemon, wait_until
from libp2p import create_yamux_muxer_option, new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.security.secio import transport as secio


def plaintext(kp):  # type: ignore[no-untyped-def]
    return {TProtocol(PLAINTEXT_PROTOCOL_ID): InsecureTransport(kp)}


def secio_only(kp):  # type: ignore[no-untyped-def]
    return {TProtocol(secio.ID): secio.Transport(kp)}


def noise(kp):  # type: ignore[no-untyped-def]
    key = create_x25519_key_pair().private_key
    return {TProtocol(NOISE_ID): NoiseTransport(kp, noise_privkey=key)}


async def dial_with(security: Callable, target: str) -> None:  # type: ignore[type-arg]
    kp = create_new_key_pair()
    host = new_host(key_pair=kp, sec_opt=security(kp), muxer_opt=create_yamux_muxer_option(),
                    connection_config=ConnectionConfig(max_connections_per_peer=1))
    async with host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        with trio.fail_after(15):
            await host.connect(info_from_p2p_addr(multiaddr.Multiaddr(target)))


@pytest.mark.parametrize("security", [plaintext, secio_only], ids=["plaintext", "secio"])
async def test_downgraded_dial_is_refused(daemon: Callable[..., Daemon], security: Callable
                                          ) -> None:  # type: ignore[type-arg]
    d = daemon().start()
    with pytest.raises(Exception):  # noqa: B017 - any failure to connect is the point
        await dial_with(security, d.addr)
    assert d.api("swarm/peers")["Peers"] == []


async def test_noise_dial_is_accepted(daemon: Callable[..., Daemon]) -> None:
    d = daemon().start()
    kp_peer_ids: list[str] = []

    async def dial_and_hold() -> None:
        kp = create_new_key_pair()
        host = new_host(key_pair=kp, sec_opt=noise(kp), muxer_opt=create_yamux_muxer_option(),
                        connection_config=ConnectionConfig(max_connections_per_peer=1))
        kp_peer_ids.append(str(host.get_id()))
        async with host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
            await host.connect(info_from_p2p_addr(multiaddr.Multiaddr(d.addr)))
            # The peer can be listed a moment before the peer book has its record (its
            # Direction and Addr then empty): wait for the record, not the bare listing.
            seen = await trio.to_thread.run_sync(lambda: wait_until(
                lambda: [p for p in d.api("swarm/peers")["Peers"]
                         if p["Peer"] == kp_peer_ids[0] and p["Direction"]]
            ))
            assert seen and seen[0]["Direction"] == "inbound"

    with trio.fail_after(20):
        await dial_and_hold()
