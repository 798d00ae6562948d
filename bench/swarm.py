"""Swarm benchmark: N daemons on loopback (one master, the DHT server and bootstrap peer;
N - 1 workers), each its own process. Memory per node, time from exec to connected to the
bootstrap peer, and find-providers latency p50/p95 over every node for a CID one node added.
Target: 50 nodes on this machine, p95 <= 1 s.

    python bench/swarm.py [--sizes 10 20 50]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from helpers import Daemon, memory_kib, start_swarm, wait_until

from ipfs_kit_node.client import Client


def find_ms(node: Daemon, cid: str, holder: str) -> float:
    with Client(node.repo / "api.sock", repo=node.repo) as client:
        started = time.perf_counter()
        with client.stream("dht/findprovs", {"arg": cid}) as response:  # ndjson
            providers = [r for line in response.iter_lines() if line
                         for r in json.loads(line)["Responses"]]
        took = (time.perf_counter() - started) * 1000
    return took if any(p["ID"] == holder for p in providers) else float("inf")


def run(n: int) -> None:
    with tempfile.TemporaryDirectory(prefix="ikn-swarm-", dir="/tmp") as d:
        root = Path(d)
        started = time.monotonic()
        nodes = start_swarm(root, n, timeout=300)
        try:
            boot = []
            for node in nodes[1:]:
                wait_until(lambda x=node: len(x.api("swarm/peers")["Peers"]) > 0, 30, 0.05)
                boot.append(node.ready_after)
            all_up = time.monotonic() - started
            time.sleep(2)
            rss = [memory_kib(node.proc.pid) / 1024 for node in nodes if node.proc]
            holder = nodes[len(nodes) // 2]
            f = root / "file"
            f.write_bytes(b"one provider among %d nodes" % n)
            cid = holder.cli("add", "-Q", str(f)).stdout.strip()
            wait_until(lambda: find_ms(nodes[0], cid, holder.peer_id) < float("inf"), 10)
            lat = sorted(find_ms(node, cid, holder.peer_id) for node in nodes
                         if node is not holder)
            found = sum(1 for x in lat if x < float("inf"))
            p50 = statistics.median(lat)
            p95 = lat[min(len(lat) - 1, round(0.95 * (len(lat) - 1)))]
            print(f"{n:4} nodes: RSS {statistics.mean(rss):5.1f} MiB/node "
                  f"({sum(rss) / 1024:.2f} GiB total); exec->READY median "
                  f"{statistics.median(boot) * 1000:.0f} ms; all up in {all_up:.1f} s; "
                  f"find-providers p50 {p50:.0f} ms, p95 {p95:.0f} ms; found by {found}/"
                  f"{len(lat)} (target p95 <= 1000 ms)")
        finally:
            for node in nodes:
                node.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 20, 50])
    for n in parser.parse_args().sizes:
        run(n)


if __name__ == "__main__":
    main()
