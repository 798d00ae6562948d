"""Bitswap benchmark on loopback, one run: 64 MiB fetch throughput and 1 MiB fetch latency for
Helia->Helia (the reference), Helia fetching from ours, ours fetching from Helia, ours<->ours;
and the fetcher's peak RSS. All four use the same DAG settings (CIDv1, raw 256 KiB leaves,
174 links: Kubo's --cid-version=1). Ours fetches through the daemon's `cat` (HTTP stream to this
process, discarded). Targets: Helia from ours and ours<->ours >= 1.5x Helia<->Helia; our 1 MiB
latency <= 0.7x Helia's.

    python bench/bitswap.py [--size-mib 64] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from helpers import Daemon, HeliaPeer, ensure_helia_installed, memory_kib

from ipfs_kit_node.api.client import ApiClient

OPTS = {"cidVersion": 1, "rawLeaves": True, "chunkSize": 256 * 1024, "maxChildrenPerNode": 174}
ADD_ARGS = ["--cid-version", "1"]




def growth_mib(pid: int, before_kib: int) -> float:
    """Peak resident memory since ``before_kib`` was read, in MiB."""
    return (memory_kib(pid, "VmHWM") - before_kib) / 1024


def ours_fetch(d: Daemon, cid: str) -> float:
    started = time.perf_counter()
    with ApiClient(d.repo / "api.sock", d.repo, timeout=120) as client, \
            client.stream("cat", {"arg": cid}) as response:
        for _ in response.iter_bytes():
            pass
    return time.perf_counter() - started


def helia_fetch(h: HeliaPeer, cid: str, out: Path) -> float:
    started = time.perf_counter()
    h.call("cat", cid=cid, out=str(out), timeoutMs=120_000, timeout=150)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    ensure_helia_installed()
    big = args.size_mib * 2**20
    results: dict[str, list[float]] = {}
    latency: dict[str, list[float]] = {}
    peak: dict[str, list[float]] = {}

    def record(name: str, seconds: float, size: int, rss: float | None = None) -> None:
        target = results if size == big else latency
        target.setdefault(name, []).append(seconds)
        if rss is not None:
            peak.setdefault(name, []).append(rss)

    with tempfile.TemporaryDirectory(prefix="ikn-bench-", dir="/tmp") as d:
        tmp = Path(d)
        for run in range(args.runs):
            for size in (big, 2**20):
                f = tmp / f"in-{run}-{size}"
                f.write_bytes(os.urandom(size))
                # Helia -> Helia
                a, b = HeliaPeer(tmp / "a.log"), HeliaPeer(tmp / "b.log")
                try:
                    cid = a.call("add", path=str(f), **OPTS)["cid"]
                    b.call("dial", addr=a.addrs[0])
                    before = memory_kib(b.proc.pid)
                    seconds = helia_fetch(b, cid, tmp / "out")
                    record("Helia<-Helia", seconds, size, growth_mib(b.proc.pid, before))
                finally:
                    a.stop()
                    b.stop()
                # Helia fetching from ours; ours fetching from Helia
                ours = Daemon(tmp, name=f"ours-{run}-{size}")
                ours.start(env={"IPFS_KIT_STORAGE_MEMORY_SIZE": "16MiB"})
                h = HeliaPeer(tmp / "h.log")
                try:
                    cid = ours.cli("add", "-Q", *ADD_ARGS, str(f)).stdout.strip()
                    h.call("dial", addr=ours.addr)
                    before = memory_kib(h.proc.pid)
                    record("Helia<-ours", helia_fetch(h, cid, tmp / "out"), size,
                           growth_mib(h.proc.pid, before))
                    g = tmp / f"g-{run}-{size}"
                    g.write_bytes(os.urandom(size))
                    their = h.call("add", path=str(g), **OPTS)["cid"]
                    assert ours.proc is not None
                    before = memory_kib(ours.proc.pid)
                    record("ours<-Helia", ours_fetch(ours, their), size,
                           growth_mib(ours.proc.pid, before))
                finally:
                    h.stop()
                    ours.kill()
                # ours <-> ours
                seeder = Daemon(tmp, name=f"seed-{run}-{size}").start()
                fetcher = Daemon(tmp, name=f"fetch-{run}-{size}")
                fetcher.start(env={"IPFS_KIT_STORAGE_MEMORY_SIZE": "16MiB"})
                try:
                    cid = seeder.cli("add", "-Q", *ADD_ARGS, str(f)).stdout.strip()
                    fetcher.cli("swarm", "connect", seeder.addr)
                    assert fetcher.proc is not None
                    before = memory_kib(fetcher.proc.pid)
                    record("ours<-ours", ours_fetch(fetcher, cid), size,
                           growth_mib(fetcher.proc.pid, before))
                finally:
                    seeder.kill()
                    fetcher.kill()
                f.unlink()

    ref_tp = big / statistics.median(results["Helia<-Helia"]) / 1e6
    ref_lat = statistics.median(latency["Helia<-Helia"]) * 1000
    print(f"{args.size_mib} MiB fetch, median of {args.runs} (loopback, CIDv1 raw 256 KiB):")
    print(f"{'fetcher<-server':14} {'MB/s':>7} {'ratio':>6} {'1 MiB ms':>9} {'ratio':>6} "
          f"{'fetcher RSS growth':>19}")
    for name in results:
        tp = big / statistics.median(results[name]) / 1e6
        lat = statistics.median(latency[name]) * 1000
        rss = statistics.median(peak.get(name, [float("nan")]))
        print(f"{name:14} {tp:7.1f} {tp / ref_tp:5.2f}x {lat:9.1f} {lat / ref_lat:5.2f}x "
              f"{rss:16.1f} MiB")
    print("targets: Helia<-ours and ours<-ours >= 1.50x; our 1 MiB latency <= 0.70x")


if __name__ == "__main__":
    main()
