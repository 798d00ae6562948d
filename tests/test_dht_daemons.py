"""Routing between real daemons: provider records on the DHT, and fetching a file by CID from
a peer we were never told about (only a bootstrap peer)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from helpers import Daemon, wait_until

MakeDaemon = Callable[..., Daemon]


def test_fetch_by_cid_knowing_only_a_bootstrap_peer(daemon: MakeDaemon, short_tmp: Path
                                                    ) -> None:
    master = daemon(role="master", name="master").start()  # dhtserver by default
    holder = daemon(name="holder").start("--bootstrap", master.addr)
    fetcher = daemon(name="fetcher").start("--bootstrap", master.addr)
    f = short_tmp / "file"
    data = os.urandom(1_000_000)
    f.write_bytes(data)
    cid = holder.cli("add", "-Q", str(f)).stdout.strip()  # pinned, so announced

    assert wait_until(lambda: holder.peer_id in fetcher.cli("dht", "findprovs", cid,
                                                                timeout=60).stdout,
                      timeout=60)
    assert holder.peer_id not in {p["Peer"] for p in fetcher.api("swarm/peers")["Peers"]}
    out = short_tmp / "out"
    got = fetcher.cli("get", cid, "-o", str(out), timeout=60)  # asks the DHT, dials
    assert got.returncode == 0, got.stderr + fetcher.log()[-2000:]
    assert out.read_bytes() == data
    found = {p["Peer"]: p for p in fetcher.api("swarm/peers")["Peers"]}
    assert found[holder.peer_id]["FoundBy"] == "dht"


def test_dht_commands(daemon: MakeDaemon) -> None:
    master = daemon(role="master", name="master").start()
    worker = daemon(name="worker").start("--bootstrap", master.addr)
    assert wait_until(lambda: worker.cli("dht", "findpeer", master.peer_id,
                                                     timeout=60).returncode == 0,
                      timeout=60)
    missing = "bafkreie5nqv6kd3qnfjupgvz34woh3oksc3iau6abmyajn7qvtf6d2ho34"
    out = worker.cli("dht", "findprovs", missing, timeout=60)  # > the route's 30 s lookup
    assert out.returncode == 3 and out.stdout == "", out  # documented: 3 = none found
    assert "no providers found" in out.stderr
    unknown = "12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK"
    lost = worker.cli("dht", "findpeer", unknown, timeout=60)
    assert lost.returncode == 3 and "peer not found" in lost.stderr, lost
    provided = worker.cli("dht", "provide", missing, timeout=60)
    assert provided.returncode == 0 and missing in provided.stdout
