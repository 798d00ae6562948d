"""Pins and GC at scale: pin add/rm cost at few and many pins, restart time and index RSS,
GC time and event-loop latency during it.

    python bench/pins.py [--blocks 1000000] [--pins 100000]

Figures are printed, with the ratios the issue targets (pin cost flat within 1.2x, restart
<= 2 s, <= 200 B of RSS a block, GC of 1,000,000 blocks <= 60 s, loop p99 <= 50 ms during it).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import trio
from multiformats import CID, multihash

from ipfs_kit_node.storage import StoreConfig, TieredStore


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def block(i: int) -> tuple[CID, bytes]:
    data = i.to_bytes(8, "big") * 4
    return CID("base32", 1, "raw", multihash.digest(data, "sha2-256")), data


async def main(blocks: int, pins: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-pins-"))
    config = StoreConfig(max_size=10**12, memory_size=0, sync=False, parquet_export=False)
    store = await TieredStore.open(root, config)
    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:  # many puts at once: group commits
        limiter = trio.Semaphore(64)

        async def put(i: int) -> None:
            async with limiter:
                await store.put(*block(i))
        for i in range(blocks):
            await limiter.acquire()
            limiter.release()
            nursery.start_soon(put, i)
    print(f"put {blocks:,} blocks: {blocks / (time.perf_counter() - t0):,.0f} blocks/s")

    async def pin_rate(start: int, n: int) -> float:
        t = time.perf_counter()
        for i in range(start, start + n):
            await store.pin(block(i)[0], recursive=False)
        return n / (time.perf_counter() - t)

    few = await pin_rate(0, 100)
    for start in range(100, pins - 100, 10_000):
        await pin_rate(start, min(10_000, pins - 100 - start))
    many = await pin_rate(pins - 100, 100)
    t = time.perf_counter()
    for i in range(pins - 100, pins):
        await store.unpin(block(i)[0])
    rm_many = 100 / (time.perf_counter() - t)
    print(f"pin add: {few:,.0f}/s at 0-100 pins, {many:,.0f}/s at {pins:,} "
          f"(ratio {few / many:.2f}); pin rm at {pins:,}: {rm_many:,.0f}/s")
    await store.close()

    before = rss_kib()
    t = time.perf_counter()
    store = await TieredStore.open(root, config)
    opened = time.perf_counter() - t
    for i in range(0, blocks, max(1, blocks // 20_000)):  # touch the index across its range
        assert store.is_local(block(i)[0])
    grown = rss_kib() - before
    print(f"restart: {opened:.3f} s with {blocks:,} blocks, {store.stats().pins:,} pins; "
          f"RSS +{grown / 1024:.1f} MiB after lookups = {grown * 1024 / blocks:.1f} B/block")

    lat: list[float] = []
    done = trio.Event()

    async def probe() -> None:
        while not done.is_set():
            t = time.perf_counter()
            await trio.sleep(0.005)
            lat.append(time.perf_counter() - t - 0.005)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(probe)
        t = time.perf_counter()
        result = await store.gc(full=True)
        took = time.perf_counter() - t
        done.set()
    lat.sort()
    print(f"gc --full: removed {result.removed:,} in {took:.1f} s; loop delay p50 "
          f"{statistics.median(lat) * 1000:.1f} ms, p99 {lat[int(len(lat) * 0.99)] * 1000:.1f} "
          f"ms, max {lat[-1] * 1000:.1f} ms")
    await store.close()
    os.system(f"rm -rf {root}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--blocks", type=int, default=1_000_000)
    parser.add_argument("--pins", type=int, default=100_000)
    args = parser.parse_args()
    trio.run(main, args.blocks, args.pins)
