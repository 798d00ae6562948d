"""Our daemon and a real Helia 7 node connect both ways and identify each other."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from helpers import Daemon, HeliaPeer, wait_until

pytestmark = pytest.mark.interop


def helia_seen_by(d: Daemon, helia: HeliaPeer) -> dict[str, object] | None:
    peers = d.api("swarm/peers", {"identify": "true"})["Peers"]
    return next((p for p in peers if p["Peer"] == helia.peer_id), None)


def test_we_dial_helia(daemon: Callable[..., Daemon], helia: HeliaPeer) -> None:
    d = daemon().start()
    out = d.cli("swarm", "connect", helia.addrs[0])
    assert out.returncode == 0, out.stderr + d.log()
    seen = wait_until(lambda: helia_seen_by(d, helia), 30)
    assert seen and seen["Direction"] == "outbound"
    identify = seen["Identify"]
    assert identify["AgentVersion"].startswith("helia/")  # type: ignore[index]
    assert "/ipfs/bitswap/1.2.0" in identify["Protocols"]  # type: ignore[index]
    ours = helia.call("agent", peerId=d.peer_id, timeoutMs=20_000, timeout=40)
    assert ours["agentVersion"].startswith("ipfs-kit-node/")
    assert "/ipfs/id/1.0.0" in ours["protocols"]


def test_helia_dials_us(daemon: Callable[..., Daemon], helia: HeliaPeer) -> None:
    d = daemon().start()
    helia.call("dial", addr=d.addr)
    ours = helia.call("agent", peerId=d.peer_id, timeoutMs=20_000, timeout=40)
    assert ours["agentVersion"].startswith("ipfs-kit-node/")
    seen = wait_until(lambda: helia_seen_by(d, helia), 30)
    assert seen and seen["Direction"] == "inbound"
    assert seen["Identify"]["AgentVersion"].startswith("helia/")  # type: ignore[index]
    assert any(p["peerId"] == d.peer_id for p in helia.call("peers")["peers"])
