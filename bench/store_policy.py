"""Memory-tier policy benchmark: our tier next to LRU and a textbook ARC on the same cases.

Hit ratio and ops/s on Zipf(0.9), scan+hot and the real traces (bench/cachesim.py), read-through
(get, put on miss), every key the same size. Each policy is driven by the same kind of loop:
one call per access for LRU/ARC (``access``), ``get`` then ``put`` on a miss for ours.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from cachesim import ARC, CASES, LRU, replay  # noqa: E402

from ipfs_kit_node.storage.memory import MemoryTier  # noqa: E402

BLOCK = 4096


def replay_ours(capacity: int, keys: Sequence[int], **kw: object) -> tuple[float, float]:
    tier = MemoryTier(capacity * BLOCK, **kw)  # type: ignore[arg-type]
    get, put, blob = tier.get, tier.put, b"\0" * BLOCK
    started = time.perf_counter()
    for key in keys:
        if get(key) is None:
            put(key, blob)
    elapsed = time.perf_counter() - started
    return tier.hits / len(keys), len(keys) / elapsed


def run(only: Sequence[str] = ()) -> list[tuple[str, float, float, float, float, float]]:
    rows = []
    print(f"{'case':16} {'LRU':>6} {'ARC':>6} {'ours':>6} {'ours-ARC':>8} "
          f"{'ARC ops/s':>10} {'our ops/s':>10} {'ratio':>6}")
    for case in CASES:
        if only and not any(o in case.label for o in only):
            continue
        keys = case.load()
        lru, _ = replay(LRU(case.capacity), keys)
        arc, arc_ops = replay(ARC(case.capacity), keys)
        ours, our_ops = replay_ours(case.capacity, keys)
        rows.append((case.label, lru, arc, ours, arc_ops, our_ops))
        flag = "" if ours >= arc - 1e-9 else "  <-- below ARC"
        print(f"{case.label:16} {lru:6.1%} {arc:6.1%} {ours:6.1%} {100 * (ours - arc):+7.1f}p "
              f"{arc_ops:10,.0f} {our_ops:10,.0f} {our_ops / arc_ops:5.2f}x{flag}")
    return rows


if __name__ == "__main__":
    started = time.monotonic()
    run(sys.argv[1:])
    print(f"({time.monotonic() - started:.0f} s)")
