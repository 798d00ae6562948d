"""Fast checks of bench/cachesim.py: reference policies, trace readers, synthetic workloads."""

from __future__ import annotations

import importlib.util
import random
import struct
import sys
from pathlib import Path
from types import ModuleType

import pytest


def _load_cachesim() -> ModuleType:
    path = Path(__file__).resolve().parent.parent / "bench" / "cachesim.py"
    spec = importlib.util.spec_from_file_location("cachesim", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("cachesim", module)
    spec.loader.exec_module(module)
    return module


cs = _load_cachesim()

needs_traces = pytest.mark.skipif(
    not (cs.traces_dir() / "README.md").exists(), reason="traces folder not present"
)


def run(policy: object, keys: list[int]) -> list[bool]:
    return [policy.access(k) for k in keys]  # type: ignore[attr-defined]


def test_lru_hits_and_eviction_order() -> None:
    lru = cs.LRU(2)
    assert run(lru, [1, 2, 1, 3]) == [False, False, True, False]  # 3 evicts 2, the LRU
    assert 1 in lru and 3 in lru and 2 not in lru
    assert run(lru, [2, 1]) == [False, False]  # 2 evicted 1, then 1 evicts 3
    assert len(lru) == 2


def test_arc_promotes_to_t2_and_drops_t1_when_l1_full() -> None:
    arc = cs.ARC(2)
    assert run(arc, [1, 1]) == [False, True]
    assert list(arc.t2) == [1] and not arc.t1
    arc = cs.ARC(2)
    run(arc, [1, 2, 3])  # case IV-A with |T1| == c: the LRU of T1 is dropped, no ghost
    assert list(arc.t1) == [2, 3] and not arc.b1 and not arc.b2


def test_arc_ghost_hits_adapt_p() -> None:
    arc = cs.ARC(2)
    run(arc, [1, 1, 2, 3])  # T2=[1]; 3 pushes 2 (LRU of T1, |T1| > p) to B1
    assert (list(arc.t1), list(arc.t2), list(arc.b1)) == ([3], [1], [2])
    assert arc.p == 0
    assert arc.access(2) is False  # B1 ghost hit: p grows by 1, REPLACE takes 1 from T2
    assert arc.p == 1
    assert (list(arc.t1), list(arc.t2), list(arc.b2)) == ([3], [2], [1])
    assert arc.access(1) is False  # B2 ghost hit: p shrinks, REPLACE takes 3 from T1
    assert arc.p == 0
    assert (list(arc.t2), list(arc.b1), list(arc.b2)) == ([2, 1], [3], [])
    assert arc.access(2) is True


def test_capacity_never_exceeded_and_opt_is_best() -> None:
    rng = random.Random(7)
    for _ in range(40):
        cap = rng.randint(1, 12)
        keys = [rng.randrange(rng.randint(2, 40)) for _ in range(400)]
        lru, arc, opt = cs.LRU(cap), cs.ARC(cap), cs.OPT(cap, keys)
        hits = {"lru": 0, "arc": 0, "opt": 0}
        for k in keys:
            hits["lru"] += lru.access(k)
            hits["arc"] += arc.access(k)
            hits["opt"] += opt.access(k)
            assert len(lru) <= cap and len(opt) <= cap
            assert len(arc) <= cap
            assert len(arc.t1) + len(arc.b1) <= cap
            assert len(arc) + len(arc.b1) + len(arc.b2) <= 2 * cap
            assert 0 <= arc.p <= cap
        assert hits["opt"] >= max(hits["lru"], hits["arc"])


def test_replay_and_loop_pathology() -> None:
    keys = list(range(10)) * 20  # a loop larger than the cache
    assert cs.replay(cs.LRU(8), keys)[0] == 0.0
    assert cs.replay(cs.ARC(8), keys)[0] == 0.0
    hit_ratio, ops = cs.replay(cs.OPT(8, keys), keys)
    assert hit_ratio > 0.6 and ops > 0
    assert cs.replay(cs.LRU(10), keys)[0] == pytest.approx(190 / 200)


def test_parse_formats() -> None:
    assert cs.parse_trace(b"5\r\n7\r\n*\r\n\r\n5\r\n", "lirs") == [5, 7, 5]
    assert cs.parse_trace(struct.pack(">3i", -1, 2, 2**31 - 1), "be-i32") == [-1, 2, 2**31 - 1]
    assert cs.parse_trace(struct.pack(">2I", 2**32 - 1, 3), "be-u32") == [2**32 - 1, 3]
    assert cs.parse_trace(struct.pack(">2q", -(2**40), 9), "be-i64") == [-(2**40), 9]
    assert cs.parse_trace(b"l 0x1f 3\ns 0x10 0 1 2\n", "address") == [31, 16]
    assert cs.parse_trace(b"1 42 1000\n2 43 5\n", "adapt") == [42, 43]


@needs_traces
@pytest.mark.parametrize("name", ["gli", "loop", "web12"])
def test_load_trace_counts(name: str) -> None:
    keys = cs.load_trace(name)
    assert (len(keys), len(set(keys))) == cs.TRACE_COUNTS[name]


@needs_traces
def test_traces_dir_env_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("IPFS_KIT_TRACES", str(tmp_path))
    assert cs.traces_dir() == tmp_path
    with pytest.raises(FileNotFoundError):
        cs.load_trace("gli")
    with pytest.raises(ValueError):
        cs.load_trace("no-such-trace")


def test_workloads_deterministic() -> None:
    z = cs.zipf_workload(20_000, 2_000, seed=3)
    assert z == cs.zipf_workload(20_000, 2_000, seed=3)
    assert z != cs.zipf_workload(20_000, 2_000, seed=4)
    assert len(z) == 20_000 and min(z) >= 0 and max(z) < 2_000
    assert z.count(0) > z.count(1) > z.count(100)  # rank 1 is the most popular

    s = cs.scan_hot_workload(10_000, hot=100, cold=900, seed=3)
    assert s == cs.scan_hot_workload(10_000, hot=100, cold=900, seed=3)
    assert s != cs.scan_hot_workload(10_000, hot=100, cold=900, seed=4)
    cold = [k for k in s if k >= 100]
    assert max(s) < 1_000 and 4_000 < len(cold) < 6_000
    assert cold[:1_000] == [100 + i % 900 for i in range(1_000)]  # sequential, cycling


def test_shifting_zipf_moves_its_hot_set() -> None:
    keys = cs.shifting_zipf_workload(20_000, 2_000, shift_every=5_000, seed=3)
    assert keys == cs.shifting_zipf_workload(20_000, 2_000, shift_every=5_000, seed=3)
    assert len(keys) == 20_000 and min(keys) >= 0 and max(keys) < 2_000
    phases = [keys[i:i + 5_000] for i in range(0, 20_000, 5_000)]
    tops = [max(set(p), key=p.count) for p in phases]
    assert len(set(tops)) > 1  # the most popular key changes between phases
    first = phases[0]
    assert first.count(tops[0]) > 5 * phases[1].count(tops[0])


def test_cases() -> None:
    labels = [c.label for c in cs.CASES]
    assert len(labels) == len(set(labels))
    assert {"zipf0.9@2000", "scan+hot@2000", "loop@768", "gli@500"} <= set(labels)
    for name in ("gli", "loop", "multi2", "ps", "sprite", "web12", "w106"):
        assert sum(c.workload == name for c in cs.CASES) >= 4
