"""Pins and GC at scale, every figure issue 20 asks for, in one run.

    python bench/pins.py [--blocks 1000000] [--pins 100000] [--dag-mib 64] [--batches 7]

1. ``--blocks`` 32-byte raw blocks are stored (put_many, sync off: the setup, not a figure).
2. Pin add and rm cost at <= 100 pins and at ``--pins`` pins: the index is copied before the
   pins are added (same blocks, no pins), then both stores are open side by side and take
   turns, ``--batches`` batches of 100 pins then 100 unpins each, so a busy moment of a shared
   machine hits both alike. Wall time (pins/s) and CPU time (µs a pin, all threads) as
   min/median/max; the ratios compare the medians.
3. Restart in a fresh process: open time and RSS growth (after 20,000 lookups across the
   index) with all blocks and pins, after a clean stop and after kill -9.
4. A daemon on that repo runs ``repo/gc?full=true`` over the RPC while another thread calls
   ``id`` over the RPC in a loop: GC time, ``id`` latency p50/p99/max during it.
5. A adds ``--dag-mib`` MiB of random bytes; in each of ``--dag-runs`` runs fresh B
   ``pin/add``s it from A and fresh C ``cat``s it from A, taking turns to go first. MB/s of
   each as min/median/max, and the ratio of the medians.

Targets (issue 20): pin cost flat (<= 1.2x); restart <= 2 s; <= 200 B of RSS a block; GC of
1,000,000 blocks <= 60 s with ``id`` p99 <= 50 ms; pin add fetch >= 0.9x cat throughput.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent / "tests"
# Not this folder first: a sibling script named like a stdlib module (http.py) would shadow it.
sys.path[:] = [str(TESTS)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]
import trio  # noqa: E402
from helpers import Daemon  # noqa: E402 - tests/ is not a package
from multiformats import CID  # noqa: E402

from ipfs_kit_node.cid import cid_from_bytes  # noqa: E402
from ipfs_kit_node.client import Client  # noqa: E402
from ipfs_kit_node.storage import StoreConfig, TieredStore  # noqa: E402

CONFIG = StoreConfig(max_size=10**13, memory_size=0, sync=False, parquet_export=False)
ENV = {"IPFS_KIT_STORAGE_SYNC": "false", "IPFS_KIT_STORAGE_MAX_SIZE": "10TB"}


def block(i: int) -> tuple[CID, bytes]:
    data = i.to_bytes(8, "big") * 4
    return cid_from_bytes(b"\x01\x55\x12\x20" + hashlib.sha256(data).digest()), data


def spread(values: list[float], fmt: str = "{:,.0f}") -> str:
    return "/".join(fmt.format(v) for v in (min(values), statistics.median(values),
                                             max(values)))


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


# -- 1 and 2: fill, pin cost -----------------------------------------------------------------

async def fill_and_pin(repo: Path, blocks: int, pins: int, batches: int) -> None:
    store = await TieredStore.open(repo, CONFIG)
    t0 = time.perf_counter()
    for start in range(0, blocks, 512):
        await store.put_many([block(i) for i in range(start, min(blocks, start + 512))],
                             hashed=True)
    print(f"setup: {blocks:,} blocks stored, {blocks / (time.perf_counter() - t0):,.0f}/s")

    await store.close()  # a copy of the index with every block and no pin: the "few" store
    few_repo = repo.with_name("few")
    (few_repo / "datastore").mkdir(parents=True)
    shutil.copy(repo / "datastore" / "index.sqlite", few_repo / "datastore" / "index.sqlite")
    (few_repo / "datastore" / "CLEAN").touch()
    store = await TieredStore.open(repo, CONFIG)

    async def cost(store: TieredStore, start: int) -> tuple[float, float, float, float]:
        """(pins/s, rm/s, CPU µs a pin, CPU µs an unpin) for 100 pins from ``start``."""
        cids = [block(i)[0] for i in range(start, start + 100)]
        w, c = time.perf_counter(), time.process_time()
        for cid in cids:
            await store.pin(cid, recursive=False)
        w1, c1 = time.perf_counter(), time.process_time()
        for cid in cids:
            await store.unpin(cid)
        w2, c2 = time.perf_counter(), time.process_time()
        return 100 / (w1 - w), 100 / (w2 - w1), (c1 - c) * 1e4, (c2 - c1) * 1e4

    t0 = time.perf_counter()
    for i in range(pins):
        await store.pin(block(i)[0], recursive=False)
    print(f"setup: {pins:,} pins added, {pins / (time.perf_counter() - t0):,.0f}/s")
    few_store = await TieredStore.open(few_repo, CONFIG)
    few, many = [], []
    for _ in range(batches):
        few.append(await cost(few_store, blocks - 100))
        many.append(await cost(store, blocks - 100))
    await few_store.close()
    shutil.rmtree(few_repo)
    for label, col, unit in (("pin add", 0, "/s"), ("pin rm", 1, "/s")):
        a, b = [r[col] for r in few], [r[col] for r in many]
        ca, cb = [r[col + 2] for r in few], [r[col + 2] for r in many]
        print(f"{label}: {spread(a)}{unit} at <=100 pins, {spread(b)}{unit} at {pins:,} "
              f"(min/median/max; median ratio {statistics.median(a) / statistics.median(b):.2f}"
              f"); CPU {spread(ca)} vs {spread(cb)} µs a pin (ratio "
              f"{statistics.median(cb) / statistics.median(ca):.2f})")
    await store.close()


# -- 3: restart ------------------------------------------------------------------------------

async def child_open(repo: Path, blocks: int, hold: bool) -> None:
    """In a fresh process: open, look up, report; ``hold``: write, then wait to be killed."""
    before = rss_kib()
    t = time.perf_counter()
    store = await TieredStore.open(repo, CONFIG)
    opened = time.perf_counter() - t
    for i in range(0, blocks, max(1, blocks // 20_000)):
        assert store.is_local(block(i)[0])
    grown = rss_kib() - before
    print(f"{opened:.3f} {grown} {store.stats().pins}", flush=True)
    if hold:
        await store.pin(block(blocks - 1)[0], recursive=False)
        await store.unpin(block(blocks - 1)[0])
        print("held", flush=True)
        await trio.sleep(3600)
    await store.close()


def restart(repo: Path, blocks: int) -> None:
    command = [sys.executable, __file__, "--child-open", str(repo), "--blocks", str(blocks)]
    for label in ("clean stop", "kill -9"):
        if label == "kill -9":  # a writer killed mid-run: no CLEAN marker, a WAL to read
            proc = subprocess.Popen([*command, "--hold"], stdout=subprocess.PIPE, text=True)
            assert proc.stdout is not None
            while proc.stdout.readline().strip() != "held":
                pass
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        opened, grown, pins = out.split()
        print(f"restart after {label}: {float(opened):.3f} s with {blocks:,} blocks and "
              f"{int(pins):,} pins; RSS +{int(grown) / 1024:.1f} MiB after 20,000 lookups = "
              f"{int(grown) * 1024 / blocks:.1f} B/block")


# -- 4: GC under a daemon, id over the RPC ---------------------------------------------------

def gc_with_id_probe(root: Path, repo_name: str) -> None:
    node = Daemon(root, name=repo_name).start(env=ENV, timeout=120)
    try:
        lat: list[float] = []
        done = threading.Event()

        def probe() -> None:
            while not done.is_set():
                t = time.perf_counter()
                node.api("id", timeout=30)
                lat.append(time.perf_counter() - t)
                time.sleep(0.01)

        thread = threading.Thread(target=probe)
        time.sleep(2)  # the start's background jobs (reconcile, export) settle a little
        thread.start()
        time.sleep(5)  # the reference: id on this daemon, this machine, without GC
        idle = sorted(lat)
        t = time.perf_counter()
        result = node.api("repo/gc", {"full": "true"}, timeout=3600)
        took = time.perf_counter() - t
        during = lat[len(idle):]
        done.set()
        thread.join()
        during.sort()
        removed = result.get("Removed", result) if isinstance(result, dict) else result
        print(f"gc --full: {took:.1f} s ({removed} removed); id over the RPC during it: "
              f"p50 {statistics.median(during) * 1e3:.1f} ms, p99 "
              f"{during[int(len(during) * 0.99)] * 1e3:.1f} ms, max {during[-1] * 1e3:.1f} ms "
              f"({len(during)} calls); idle before it: p50 "
              f"{statistics.median(idle) * 1e3:.1f} ms, p99 "
              f"{idle[int(len(idle) * 0.99)] * 1e3:.1f} ms")
    finally:
        node.stop()


# -- 5: pin add from a peer against cat ------------------------------------------------------

def pin_vs_cat(root: Path, mib: int, runs: int) -> None:
    """A holds the DAG; each run, fresh peers B (pin add) and C (cat) fetch it from A, in
    turns, who goes first alternating."""
    a = Daemon(root, name="a").start(env=ENV, timeout=60)
    try:
        data = os.urandom(mib * 2**20)
        path = root / "dag.bin"
        path.write_bytes(data)
        cid = a.cli("add", "-Q", str(path), timeout=600).stdout.strip()
        pin_s: list[float] = []
        cat_s: list[float] = []

        def pin(b: Daemon) -> None:
            t = time.perf_counter()
            b.api("pin/add", {"arg": cid}, timeout=600)
            pin_s.append(time.perf_counter() - t)

        def cat(c: Daemon) -> None:
            t = time.perf_counter()
            h = hashlib.sha256()
            with Client(c.repo / "api.sock", repo=c.repo, timeout=600) as client, \
                    client.stream("cat", {"arg": cid}) as response:
                for chunk in response.iter_bytes():
                    h.update(chunk)
            cat_s.append(time.perf_counter() - t)
            assert h.digest() == hashlib.sha256(data).digest()

        for run in range(runs):
            b, c = (Daemon(root, name=f"{n}{run}").start(env=ENV, timeout=60) for n in "bc")
            try:
                for peer in (b, c):
                    assert peer.cli("swarm", "connect", a.addr).returncode == 0
                if run % 2 == 0:
                    pin(b)
                    cat(c)
                else:
                    cat(c)
                    pin(b)
            finally:
                b.stop()
                c.stop()
        size = len(data) / 1e6
        pin_mb = [size / t for t in pin_s]
        cat_mb = [size / t for t in cat_s]
        print(f"{mib} MiB DAG from a peer ({runs} runs): pin add {spread(pin_mb, '{:.1f}')} "
              f"MB/s, cat {spread(cat_mb, '{:.1f}')} MB/s (min/median/max); ratio of medians "
              f"{statistics.median(pin_mb) / statistics.median(cat_mb):.2f}")
    finally:
        a.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--blocks", type=int, default=1_000_000)
    parser.add_argument("--pins", type=int, default=100_000)
    parser.add_argument("--dag-mib", type=int, default=64)
    parser.add_argument("--batches", type=int, default=7)
    parser.add_argument("--dag-runs", type=int, default=3)
    parser.add_argument("--child-open", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--hold", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_open:
        from ipfs_kit_node.logs import configure_logging

        configure_logging(level="warning")
        trio.run(child_open, args.child_open, args.blocks, args.hold)
        return
    from ipfs_kit_node.logs import configure_logging

    configure_logging(level="warning")
    root = Path(tempfile.mkdtemp(prefix="bench-pins-"))
    try:
        node = Daemon(root, name="big").start(env=ENV)  # an initialised repo
        node.stop()
        trio.run(fill_and_pin, node.repo, args.blocks, args.pins, args.batches)
        restart(node.repo, args.blocks)
        gc_with_id_probe(root, "big")
        pin_vs_cat(root, args.dag_mib, args.dag_runs)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
