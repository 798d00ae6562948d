"""Cache simulator: trace readers, synthetic workloads and reference policies (LRU, ARC, OPT).

The reference half of the memory-tier cache benchmark. Capacities are in entries (every key
has the same size here). Every policy is read-through: ``access(key)`` returns True on a hit
and inserts the key on a miss. Stdlib only, so other scripts can import it and run their own
policy on the same ``CASES``::

    from cachesim import CASES, replay
    for case in CASES:
        hit_ratio, ops = replay(MyPolicy(case.capacity), case.load())

Traces live in ``<repo>/../shared/traces`` (README.md there describes the formats); set
``IPFS_KIT_TRACES`` to use another folder.

    python bench/cachesim.py [--only SUBSTR ...] [--no-opt] [--check-counts]
"""

from __future__ import annotations

import argparse
import functools
import gzip
import heapq
import itertools
import lzma
import os
import random
import sys
import time
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import NamedTuple, Protocol

__all__ = [
    "ARC",
    "CASES",
    "LRU",
    "OPT",
    "TRACE_COUNTS",
    "TRACE_FILES",
    "WORKING_SET",
    "Case",
    "Policy",
    "load_trace",
    "replay",
    "scan_hot_workload",
    "shifting_zipf_workload",
    "traces_dir",
    "zipf_workload",
]

# --------------------------------------------------------------------------------------------
# Traces

# name -> (path relative to the traces folder, format id from the traces README)
TRACE_FILES: dict[str, tuple[str, str]] = {
    "2_pools": ("lirs/2_pools.trace.gz", "lirs"),
    "cpp": ("lirs/cpp.trace.gz", "lirs"),
    "cs": ("lirs/cs.trace.gz", "lirs"),
    "gli": ("lirs/gli.trace.gz", "lirs"),
    "loop": ("lirs/loop.trace.gz", "lirs"),
    "multi1": ("lirs/multi1.trace.gz", "lirs"),
    "multi2": ("lirs/multi2.trace.gz", "lirs"),
    "multi3": ("lirs/multi3.trace.gz", "lirs"),
    "ps": ("lirs/ps.trace.gz", "lirs"),
    "sprite": ("lirs/sprite.trace.gz", "lirs"),
    "backf": ("lirs/backf.trace.gz", "lirs"),
    "scan": ("lirs/scan.trace.gz", "lirs"),
    "zigzag": ("lirs/zigzag.trace.gz", "lirs"),
    "gcc": ("address/gcc.trace.gz", "address"),
    "gzip": ("address/gzip.trace.gz", "address"),
    "mcf": ("address/mcf.trace.gz", "address"),
    "swim": ("address/swim.trace.gz", "address"),
    "twolf": ("address/twolf.trace.gz", "address"),
    "gcc-penalties": ("address/penalties/gcc.trace.xz", "address"),
    "orm-busy": ("cache2k/orm-busy.trace.xz", "be-i32"),
    "orm-night": ("cache2k/orm-night.trace.xz", "be-i32"),
    "web07": ("cache2k/web07.trace.xz", "be-i32"),
    "web12": ("cache2k/web12.trace.xz", "be-i32"),
    "w106": ("cloud_physics/w106.trace.xz", "be-u32"),
    "corda-vault": ("corda/trace_vaultservice.gz", "be-i64"),
    "scarab-recs": ("scarab/scarab-recs.trace.xz", "be-i64"),
    "adapt-size": ("adapt_size/request.trace.xz", "adapt"),
}

# name -> (requests, distinct keys), from the traces README table (checked by --check-counts).
TRACE_COUNTS: dict[str, tuple[int, int]] = {
    "2_pools": (100_000, 9_939),
    "cpp": (9_047, 1_223),
    "cs": (6_781, 1_409),
    "gli": (6_015, 2_529),
    "loop": (505_500, 1_011),
    "multi1": (15_858, 2_606),
    "multi2": (26_311, 5_684),
    "multi3": (30_241, 7_454),
    "ps": (10_448, 3_083),
    "sprite": (133_996, 7_075),
    "backf": (9_000, 751),
    "scan": (50_025, 2_001),
    "zigzag": (52_001, 2_001),
    "gcc": (515_683, 35_070),
    "gzip": (481_044, 160_167),
    "mcf": (727_230, 719_685),
    "swim": (303_193, 22_605),
    "twolf": (482_824, 7_354),
    "gcc-penalties": (515_683, 35_070),
    "orm-busy": (5_000_000, 76_349),
    "orm-night": (5_000_000, 86_466),
    "web07": (76_118, 20_484),
    "web12": (95_607, 13_756),
    "w106": (5_292_456, 275_171),
    "corda-vault": (135_702, 90_468),
    "scarab-recs": (1_245_184, 258_368),
    "adapt-size": (66_987, 36_815),  # keyed by object id only (40,240 id+size pairs)
}

_BINARY_CODES = {"be-i32": "i", "be-u32": "I", "be-i64": "q"}


def traces_dir() -> Path:
    """The traces folder: $IPFS_KIT_TRACES, else <repo>/../shared/traces."""
    env = os.environ.get("IPFS_KIT_TRACES")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent.parent / "shared" / "traces"


def _read_bytes(path: Path) -> bytes:
    if path.suffix == ".gz":
        return gzip.decompress(path.read_bytes())
    if path.suffix == ".xz":
        return lzma.decompress(path.read_bytes())
    return path.read_bytes()


def _parse_binary(data: bytes, fmt: str) -> list[int]:
    code = _BINARY_CODES[fmt]
    arr = array(code)
    size = arr.itemsize
    if len(data) % size:
        raise ValueError(f"{fmt} trace has {len(data)} bytes, not a multiple of {size}")
    arr.frombytes(data)
    if sys.byteorder == "little":
        arr.byteswap()
    return arr.tolist()


def parse_trace(data: bytes, fmt: str) -> list[int]:
    """Decode the uncompressed bytes of a trace in format ``fmt`` into its keys."""
    if fmt == "lirs":
        # split() drops CR, LF and blank lines; "*" lines are LIRS checkpoint markers.
        return [int(tok) for tok in data.split() if tok != b"*"]
    if fmt in _BINARY_CODES:
        return _parse_binary(data, fmt)
    if fmt == "address":  # "l|s 0x<hex> <n> [penalties...]": the key is the address
        return [int(line.split(None, 2)[1], 16) for line in data.splitlines() if line.strip()]
    if fmt == "adapt":  # "<time> <id> <size>": the key is the object id (size ignored)
        return [int(line.split(None, 2)[1]) for line in data.splitlines() if line.strip()]
    raise ValueError(f"unknown trace format {fmt!r}")


def load_trace(name: str) -> list[int]:
    """Read trace ``name`` (a key of TRACE_FILES) and return its keys in request order."""
    try:
        rel, fmt = TRACE_FILES[name]
    except KeyError:
        raise ValueError(f"unknown trace {name!r}; known: {', '.join(TRACE_FILES)}") from None
    return parse_trace(_read_bytes(traces_dir() / rel), fmt)


@functools.lru_cache(maxsize=4)
def _cached_trace(name: str) -> list[int]:
    return load_trace(name)


# --------------------------------------------------------------------------------------------
# Synthetic workloads


def zipf_workload(
    n_requests: int = 200_000, n_keys: int = 20_000, alpha: float = 0.9, seed: int = 1
) -> list[int]:
    """Keys 0..n_keys-1, key k drawn with probability proportional to 1/(k+1)**alpha."""
    rng = random.Random(seed)
    cum = list(itertools.accumulate(1.0 / r**alpha for r in range(1, n_keys + 1)))
    return rng.choices(range(n_keys), cum_weights=cum, k=n_requests)


def shifting_zipf_workload(
    n_requests: int = 200_000, n_keys: int = 20_000, alpha: float = 0.9,
    shift_every: int = 5_000, seed: int = 1,
) -> list[int]:
    """Zipf(alpha) whose popular keys change every ``shift_every`` requests: each phase ranks
    the same n_keys keys in a new random order, so the hot set a cache learnt goes cold at
    once and a new one (mostly keys that were cold) takes over."""
    rng = random.Random(seed)
    cum = list(itertools.accumulate(1.0 / r**alpha for r in range(1, n_keys + 1)))
    ranks = rng.choices(range(n_keys), cum_weights=cum, k=n_requests)
    order = list(range(n_keys))
    out: list[int] = []
    for start in range(0, n_requests, shift_every):
        rng.shuffle(order)
        out.extend(order[r] for r in ranks[start:start + shift_every])
    return out


def scan_hot_workload(
    n_requests: int = 200_000, hot: int = 1_500, cold: int = 18_500, seed: int = 1
) -> list[int]:
    """Each request: with prob 0.5 a uniform hot key (0..hot-1), else the next key of a
    sequential scan cycling over the cold keys (hot..hot+cold-1)."""
    rng = random.Random(seed)
    rand, randrange = rng.random, rng.randrange
    out: list[int] = []
    append = out.append
    pos = 0
    for _ in range(n_requests):
        if rand() < 0.5:
            append(randrange(hot))
        else:
            append(hot + pos)
            pos += 1
            if pos == cold:
                pos = 0
    return out


# --------------------------------------------------------------------------------------------
# Policies


class Policy(Protocol):
    def access(self, key: int, /) -> bool: ...


class LRU:
    """Least recently used, ``capacity`` entries."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self._data: OrderedDict[int, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: int) -> bool:
        return key in self._data

    def access(self, key: int) -> bool:
        data = self._data
        if key in data:
            data.move_to_end(key)
            return True
        data[key] = None
        if len(data) > self.capacity:
            data.popitem(last=False)
        return False


class ARC:
    """Adaptive Replacement Cache, as in Megiddo & Modha, FAST'03, Fig. 4.

    T1/T2 hold the cached keys (seen once / at least twice recently), B1/B2 are their ghost
    lists; ``p`` is the adaptive target size of T1 (a real number, as in the paper). Every
    OrderedDict runs LRU (first) -> MRU (last).
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.p = 0.0
        self.t1: OrderedDict[int, None] = OrderedDict()
        self.t2: OrderedDict[int, None] = OrderedDict()
        self.b1: OrderedDict[int, None] = OrderedDict()
        self.b2: OrderedDict[int, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self.t1) + len(self.t2)

    def __contains__(self, key: int) -> bool:
        return key in self.t1 or key in self.t2

    def _replace(self, in_b2: bool) -> None:
        """REPLACE(x_t, p); ``in_b2`` says whether x_t is in B2."""
        t1 = self.t1
        n1 = len(t1)
        if n1 and ((in_b2 and n1 == self.p) or n1 > self.p):
            self.b1[t1.popitem(last=False)[0]] = None
        else:
            self.b2[self.t2.popitem(last=False)[0]] = None

    def access(self, key: int) -> bool:
        t1, t2 = self.t1, self.t2
        # Case I: hit in T1 or T2 -> MRU of T2.
        if key in t1:
            del t1[key]
            t2[key] = None
            return True
        if key in t2:
            t2.move_to_end(key)
            return True
        b1, b2 = self.b1, self.b2
        c = self.capacity
        # Case II: ghost hit in B1 -> grow p.
        if key in b1:
            n1, n2 = len(b1), len(b2)
            self.p = min(self.p + (1.0 if n1 >= n2 else n2 / n1), c)
            self._replace(False)
            del b1[key]
            t2[key] = None
            return False
        # Case III: ghost hit in B2 -> shrink p.
        if key in b2:
            n1, n2 = len(b1), len(b2)
            self.p = max(self.p - (1.0 if n2 >= n1 else n1 / n2), 0.0)
            self._replace(True)
            del b2[key]
            t2[key] = None
            return False
        # Case IV: complete miss.
        l1 = len(t1) + len(b1)
        if l1 == c:  # A: L1 has exactly c pages
            if len(t1) < c:
                b1.popitem(last=False)
                self._replace(False)
            else:
                t1.popitem(last=False)
        else:  # B: L1 has fewer than c pages
            total = l1 + len(t2) + len(b2)
            if total >= c:
                if total == 2 * c:
                    b2.popitem(last=False)
                self._replace(False)
        t1[key] = None
        return False


class OPT:
    """Belady's optimum (demand paging: a miss is always inserted; evict the key whose next
    use is farthest away). Needs the whole sequence up front; ``access`` must then be called
    with exactly that sequence, in order."""

    def __init__(self, capacity: int, keys: Sequence[int]) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        n = len(keys)
        nxt = array("q", bytes(8 * n))
        last: dict[int, int] = {}
        for i in range(n - 1, -1, -1):
            k = keys[i]
            nxt[i] = last.get(k, n)  # n = never used again
            last[k] = i
        self._next = nxt
        self._pos = 0
        self._cache: dict[int, int] = {}  # key -> position of its next use
        self._heap: list[tuple[int, int]] = []  # (-next use, key), stale entries skipped

    def __len__(self) -> int:
        return len(self._cache)

    def access(self, key: int) -> bool:
        i = self._pos
        self._pos = i + 1
        nu = self._next[i]
        cache, heap = self._cache, self._heap
        hit = key in cache
        if not hit and len(cache) >= self.capacity:
            while True:
                neg, k = heapq.heappop(heap)
                if cache.get(k) == -neg:
                    del cache[k]
                    break
        cache[key] = nu
        heapq.heappush(heap, (-nu, key))
        if len(heap) > 4 * self.capacity + 1024:  # drop stale entries
            heap[:] = [(-v, k) for k, v in cache.items()]
            heapq.heapify(heap)
        return hit


def replay(policy: Policy, keys: Iterable[int]) -> tuple[float, float]:
    """Run every key through ``policy.access``; return (hit ratio, accesses per second).
    Only the access loop is timed."""
    seq = keys if isinstance(keys, Sequence) else list(keys)
    if not seq:
        return 0.0, 0.0
    access = policy.access
    t0 = time.perf_counter()
    hits = sum(map(access, seq))
    elapsed = time.perf_counter() - t0
    return hits / len(seq), len(seq) / elapsed if elapsed > 0 else float("inf")


# --------------------------------------------------------------------------------------------
# Benchmark cases


class Case(NamedTuple):
    """One benchmark run: ``label`` is "<workload>@<entries>", unique within CASES."""

    label: str
    load: Callable[[], list[int]]  # returns a shared, cached list: do not mutate it
    capacity: int

    @property
    def workload(self) -> str:
        return self.label.partition("@")[0]


BENCH_TRACES = ("gli", "loop", "multi2", "ps", "sprite", "web12", "w106")
FRACTIONS = (0.025, 0.05, 0.10, 0.20)
EXTRA_SIZES: dict[str, tuple[int, ...]] = {"loop": (768,), "gli": (500,)}


@functools.lru_cache(maxsize=1)
def _zipf_default() -> list[int]:
    return zipf_workload()


@functools.lru_cache(maxsize=4)
def _shifting_zipf(shift_every: int) -> list[int]:
    return shifting_zipf_workload(shift_every=shift_every)


@functools.lru_cache(maxsize=1)
def _scan_hot_default() -> list[int]:
    return scan_hot_workload()


# workload -> working-set size in keys (for synthetic ones: the key space, 20,000)
WORKING_SET: dict[str, int] = {
    "zipf0.9": 20_000,
    "scan+hot": 20_000,
    **{f"zipf-shift{period // 1000}k": 20_000 for period in (1_000, 2_000, 5_000, 20_000)},
    **{name: TRACE_COUNTS[name][1] for name in BENCH_TRACES},
}


def _build_cases() -> list[Case]:
    cases = [
        Case("zipf0.9@500", _zipf_default, 500),
        Case("zipf0.9@2000", _zipf_default, 2_000),
        Case("scan+hot@2000", _scan_hot_default, 2_000),
    ]
    # A hot set that moves: the Zipf ranking reshuffled every 1k..20k requests.
    for period in (1_000, 2_000, 5_000, 20_000):
        loader = functools.partial(_shifting_zipf, period)
        cases.extend(Case(f"zipf-shift{period // 1000}k@{size}", loader, size)
                     for size in (500, 2_000))
    for name in BENCH_TRACES:
        distinct = WORKING_SET[name]
        sizes = {max(1, round(distinct * f)) for f in FRACTIONS} | set(EXTRA_SIZES.get(name, ()))
        loader = functools.partial(_cached_trace, name)
        cases.extend(Case(f"{name}@{size}", loader, size) for size in sorted(sizes))
    return cases


CASES: list[Case] = _build_cases()


# --------------------------------------------------------------------------------------------
# Main


def check_counts(names: Iterable[str]) -> bool:
    ok = True
    for name in names:
        keys = load_trace(name)
        got = (len(keys), len(set(keys)))
        want = TRACE_COUNTS[name]
        flag = "ok" if got == want else f"MISMATCH (README {want[0]:,} / {want[1]:,})"
        ok &= got == want
        print(f"{name:14} {got[0]:>10,} requests {got[1]:>9,} distinct  {flag}")
    return ok


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--only", nargs="*", default=[], help="run cases whose label contains one")
    ap.add_argument("--no-opt", action="store_true", help="skip the Belady optimum column")
    ap.add_argument("--check-counts", action="store_true", help="verify all trace counts")
    args = ap.parse_args(argv)

    if args.check_counts:
        return 0 if check_counts(TRACE_FILES) else 1

    cases = [c for c in CASES if not args.only or any(s in c.label for s in args.only)]
    print(
        f"{'case':14} {'entries':>8} {'%keys':>6}  {'LRU':>6} {'ARC':>6} {'OPT':>6}"
        f"  {'LRU ops/s':>10} {'ARC ops/s':>10}"
    )
    for case in cases:
        keys = case.load()
        distinct = WORKING_SET.get(case.workload) or len(set(keys))
        lru, lru_ops = replay(LRU(case.capacity), keys)
        arc, arc_ops = replay(ARC(case.capacity), keys)
        opt = "" if args.no_opt else f"{replay(OPT(case.capacity, keys), keys)[0]:6.1%}"
        print(
            f"{case.label:14} {case.capacity:>8,} {case.capacity / distinct:6.1%}"
            f"  {lru:6.1%} {arc:6.1%} {opt:>6}  {lru_ops:>10,.0f} {arc_ops:>10,.0f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
