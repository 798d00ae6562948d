"""Provider records between our DHT and Helia's (js kad-dht), both ways."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import Daemon, HeliaPeer, wait_until

pytestmark = pytest.mark.interop


def test_provider_records_both_ways(daemon: Callable[..., Daemon], helia: HeliaPeer,
                                    short_tmp: Path) -> None:
    ours = daemon(role="master", name="master").start()  # a DHT server
    assert ours.cli("swarm", "connect", helia.addrs[0]).returncode == 0

    # Helia announces a file; we find it as a provider.
    theirs = short_tmp / "theirs"
    theirs.write_bytes(os.urandom(5000))
    their_cid = helia.call("add", path=str(theirs), cidVersion=1, rawLeaves=True)["cid"]

    def we_find_them() -> bool:
        # Helia's provide gives up at its timeoutMs and nothing retries it: announce again
        # on each round until our lookup (its own 30 s bound) sees the record.
        with contextlib.suppress(RuntimeError, TimeoutError):
            helia.call("provide", cid=their_cid, timeoutMs=30_000, timeout=45)
        return helia.peer_id in ours.cli("dht", "findprovs", their_cid, timeout=60).stdout

    assert wait_until(we_find_them, timeout=60, interval=1)

    # We announce one (add pins, and pinned roots are provided); Helia finds us.
    mine = short_tmp / "mine"
    mine.write_bytes(os.urandom(5000))
    my_cid = ours.cli("add", "-Q", "--cid-version", "1", str(mine)).stdout.strip()

    def helia_sees_us() -> bool:
        return ours.peer_id in helia.call("findProviders", cid=my_cid, timeoutMs=3000,
                                          timeout=10)["providers"]

    assert wait_until(helia_sees_us, timeout=60, interval=0.5)

    # A third node that knows only our master fetches Helia's file: DHT, dial, Bitswap.
    worker = daemon(name="worker").start("--bootstrap", ours.addr)
    out = short_tmp / "fetched"
    got = worker.cli("get", their_cid, "-o", str(out), timeout=60)
    assert got.returncode == 0, got.stderr + worker.log()[-2000:]
    assert out.read_bytes() == theirs.read_bytes()
    found = {p["Peer"]: p["FoundBy"] for p in worker.api("swarm/peers")["Peers"]}
    assert found.get(helia.peer_id) in ("dht", "routing")  # the lookup itself may dial it
