"""Bitswap benchmark on loopback: 64 MiB fetch throughput, timed as a user sees it.

Against a real Go Kubo v0.22 core (tests/kubo/harness.py; skipped with a message when the
wheel cannot be installed): Kubo<-Kubo (the reference), Kubo fetching from ours, ours fetching
from Kubo, ours<-ours, all with Kubo's `ipfs add` defaults (CIDv0, 256 KiB dag-pb leaves),
every ratio against Kubo<-Kubo of the same run. Kubo's time is its `Download` call (it writes
the file); ours is `ipfs-kit-node get CID -o FILE` (the CLI's start included). Target: >= 1.0x.
"Kubo<-ours" serves from disk (a 16 MiB memory tier: each block read from its pack and
re-hashed); "Kubo<-ours dflt" is a daemon with its default config, whose memory tier still
holds the file just added, as a user's would.
"local get" is the same `get` again once the blocks are local: the floor our get path (CLI,
HTTP, exporter, store) sets under any fetch, whatever Bitswap does.

Against Helia 7 (npm): Helia<->Helia, Helia<->ours, ours<->ours with CIDv1 raw 256 KiB leaves,
plus 1 MiB latency and the fetcher's peak RSS growth.

Each run makes fresh peers and a fresh random file; figures are min/median/max over the runs.

    python bench/bitswap.py [--size-mib 64] [--runs 3] [--peers kubo|helia|all]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent / "tests"
# Not this folder first: a sibling script named like a stdlib module (http.py) would shadow it.
sys.path[:] = [str(TESTS)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]
from helpers import (  # noqa: E402 - tests/ is not a package
    Daemon,
    HeliaPeer,
    ensure_helia_installed,
    memory_kib,
    run_cli,
)
from kubo.harness import KuboPeer, installable  # noqa: E402

from ipfs_kit_node.client import Client  # noqa: E402

OPTS = {"cidVersion": 1, "rawLeaves": True, "chunkSize": 256 * 1024, "maxChildrenPerNode": 174}
ADD_ARGS = ["--cid-version", "1"]
FETCH_TIMEOUT = 300.0

Record = Callable[..., None]


def growth_mib(pid: int, before_kib: int) -> float:
    """Peak resident memory since ``before_kib`` was read, in MiB."""
    return (memory_kib(pid, "VmHWM") - before_kib) / 1024


def ours_fetch(d: Daemon, cid: str) -> float:
    started = time.perf_counter()
    with Client(d.repo / "api.sock", repo=d.repo, timeout=120) as client, \
            client.stream("cat", {"arg": cid}) as response:
        for _ in response.iter_bytes():
            pass
    return time.perf_counter() - started


def ours_get(d: Daemon, cid: str, out: Path) -> float:
    """`ipfs-kit-node get CID -o FILE` wall time, as a user runs it."""
    started = time.perf_counter()
    done = run_cli("get", cid, "-o", str(out), "--repo", str(d.repo), timeout=FETCH_TIMEOUT)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"get failed: {done.stderr.strip()[-500:]}\n"
                           f"daemon log:\n{d.log()[-3000:]}")
    return seconds


def kubo_download(k: KuboPeer, cid: str, out: Path) -> float:
    started = time.perf_counter()
    k.download(cid, out, timeout=FETCH_TIMEOUT)
    return time.perf_counter() - started


def helia_fetch(h: HeliaPeer, cid: str, out: Path) -> float:
    started = time.perf_counter()
    h.call("cat", cid=cid, out=str(out), timeoutMs=120_000, timeout=150)
    return time.perf_counter() - started


def _sha(path: Path) -> bytes:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").digest()


def _tcp_addr(d: Daemon) -> str:
    return next(a for a in d.api("id")["Addresses"] if "/tcp/" in a)


def _check(got: Path, want: Path) -> None:
    if _sha(got) != _sha(want):
        raise RuntimeError(f"{got} differs from {want}")
    got.unlink()


def kubo_run(tmp: Path, run: int, size: int, record: Record) -> None:
    """One round of the four Kubo pairs on one fresh random file."""
    f = tmp / f"k-{run}"
    f.write_bytes(os.urandom(size))
    out = tmp / "out"
    # Kubo <- Kubo
    a = KuboPeer(tmp / f"ka-{run}").start()
    b = KuboPeer(tmp / f"kb-{run}").start()
    try:
        cid = a.add_file(f)
        b.connect(a.tcp_addr)
        record("Kubo<-Kubo", kubo_download(b, cid, out))
        _check(out, f)
    finally:
        a.stop()
        b.stop()
    # Kubo <- ours, then ours <- Kubo (the same file, added on the other side)
    ours = Daemon(tmp, name=f"ok-{run}").start(env={"IPFS_KIT_STORAGE_MEMORY_SIZE": "16MiB"})
    k = KuboPeer(tmp / f"kc-{run}").start()
    try:
        mine = ours.cli("add", "-Q", "--cid-version", "0", str(f)).stdout.strip()
        k.connect(_tcp_addr(ours))
        record("Kubo<-ours", kubo_download(k, mine, out))
        _check(out, f)
        g = tmp / f"kg-{run}"
        g.write_bytes(os.urandom(size))
        theirs = k.add_file(g)
        record("ours<-Kubo", ours_get(ours, theirs, out))
        _check(out, g)
        record("  local get", ours_get(ours, theirs, out))  # the floor our get path sets
        out.unlink()
        g.unlink()
    finally:
        k.stop()
        ours.kill()
    # Kubo <- ours as a user runs it: the daemon's defaults, whose memory tier still holds what
    # was just added (the row above serves every block from its pack, re-hashed on read).
    plain = Daemon(tmp, name=f"od-{run}").start()
    k = KuboPeer(tmp / f"kd-{run}").start()
    try:
        mine = plain.cli("add", "-Q", "--cid-version", "0", str(f)).stdout.strip()
        k.connect(_tcp_addr(plain))
        record("Kubo<-ours dflt", kubo_download(k, mine, out))
        _check(out, f)
    finally:
        k.stop()
        plain.kill()
    # ours <- ours
    seeder = Daemon(tmp, name=f"os-{run}").start()
    fetcher = Daemon(tmp, name=f"of-{run}").start(
        env={"IPFS_KIT_STORAGE_MEMORY_SIZE": "16MiB"})
    try:
        cid = seeder.cli("add", "-Q", "--cid-version", "0", str(f)).stdout.strip()
        fetcher.cli("swarm", "connect", seeder.addr)
        record("ours<-ours", ours_get(fetcher, cid, out))
        _check(out, f)
    finally:
        seeder.kill()
        fetcher.kill()
    f.unlink()


def helia_run(tmp: Path, run: int, big: int, record: Record) -> None:
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


def _spread(values: list[float]) -> str:
    return (f"{min(values):6.1f} {statistics.median(values):6.1f} {max(values):6.1f}")


def kubo_report(times: dict[str, list[float]], size: int, runs: int) -> None:
    ref = times["Kubo<-Kubo"]
    print(f"\n{size // 2**20} MiB fetch against the Go Kubo v0.22 core, {runs} runs "
          "(loopback, CIDv0 dag-pb 256 KiB leaves; Kubo's Download, our `get -o`):")
    print(f"{'fetcher<-server':16} {'MB/s min':>8} {'median':>6} {'max':>6}   "
          f"{'ratio vs Kubo<-Kubo (same run) min':>34} {'median':>6} {'max':>6}")
    for name, seconds in times.items():
        mbps = [size / s / 1e6 for s in seconds]
        ratios = [r / s for r, s in zip(ref, seconds, strict=True)]
        print(f"{name:16} {_spread(mbps)}   {min(ratios):33.2f}x {statistics.median(ratios):5.2f}x"
              f" {max(ratios):5.2f}x")
    print("target: every row >= 1.00x")


def helia_report(results: dict[str, list[float]], latency: dict[str, list[float]],
                 peak: dict[str, list[float]], size: int, runs: int) -> None:
    ref_tp = size / statistics.median(results["Helia<-Helia"]) / 1e6
    ref_lat = statistics.median(latency["Helia<-Helia"]) * 1000
    print(f"\n{size // 2**20} MiB fetch against Helia 7, median of {runs} "
          "(loopback, CIDv1 raw 256 KiB; ours through the daemon's `cat` stream):")
    print(f"{'fetcher<-server':14} {'MB/s':>7} {'ratio':>6} {'1 MiB ms':>9} {'ratio':>6} "
          f"{'fetcher RSS growth':>19}")
    for name in results:
        tp = size / statistics.median(results[name]) / 1e6
        lat = statistics.median(latency[name]) * 1000
        rss = statistics.median(peak.get(name, [float("nan")]))
        print(f"{name:14} {tp:7.1f} {tp / ref_tp:5.2f}x {lat:9.1f} {lat / ref_lat:5.2f}x "
              f"{rss:16.1f} MiB")
    print("targets: Helia<-ours and ours<-ours >= 1.50x; our 1 MiB latency <= 0.70x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--peers", choices=("kubo", "helia", "all"), default="all")
    args = parser.parse_args()
    big = args.size_mib * 2**20
    kubo_times: dict[str, list[float]] = {}
    results: dict[str, list[float]] = {}
    latency: dict[str, list[float]] = {}
    peak: dict[str, list[float]] = {}

    def record_kubo(name: str, seconds: float) -> None:
        kubo_times.setdefault(name, []).append(seconds)
        print(f"  {name}: {big / seconds / 1e6:.1f} MB/s", flush=True)

    def record_helia(name: str, seconds: float, size: int, rss: float | None = None) -> None:
        target = results if size == big else latency
        target.setdefault(name, []).append(seconds)
        if rss is not None:
            peak.setdefault(name, []).append(rss)

    use_kubo = args.peers in ("kubo", "all")
    if use_kubo and (reason := installable()) is not None:
        print(f"Kubo rows skipped: the Go Kubo core is unavailable ({reason})")
        use_kubo = False
    with tempfile.TemporaryDirectory(prefix="ikn-bench-", dir="/tmp") as d:
        tmp = Path(d)
        for run in range(args.runs):
            if use_kubo:
                print(f"run {run + 1}/{args.runs} (Kubo):", flush=True)
                kubo_run(tmp, run, big, record_kubo)
            if args.peers in ("helia", "all"):
                ensure_helia_installed()
                helia_run(tmp, run, big, record_helia)
    if kubo_times:
        kubo_report(kubo_times, big, args.runs)
    if results:
        helia_report(results, latency, peak, big, args.runs)


if __name__ == "__main__":
    main()
