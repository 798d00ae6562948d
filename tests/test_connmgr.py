"""The connection manager trims to the low water mark and never drops a configured master."""

from __future__ import annotations

from collections.abc import Callable

from helpers import Daemon, wait_until

MakeDaemon = Callable[..., Daemon]


def test_trims_to_low_water_and_keeps_the_master(daemon: MakeDaemon) -> None:
    others = [daemon(name=f"p{i}").start() for i in range(6)]
    master = others[5]  # the newest connection: the first to go among equals
    center = daemon(name="center").start(env={
        "IPFS_KIT_CONNMGR_LOW_WATER": "2", "IPFS_KIT_CONNMGR_HIGH_WATER": "3",
        "IPFS_KIT_CONNMGR_GRACE_PERIOD": "0s", "IPFS_KIT_NODE_MASTERS": master.peer_id,
    })
    for peer in others:
        peer.cli("swarm", "connect", center.addr)

    def peers() -> set[str]:
        return {p["Peer"] for p in center.api("swarm/peers")["Peers"]}

    assert wait_until(lambda: len(peers()) <= 3, timeout=15), peers()
    assert master.peer_id in peers()
    assert center.api("status")["Role"] == "worker"
