"""Python API benchmark: small calls through our clients next to aioipfs, and the task
executor's overhead per task next to Celery's ``apply_async().get()``, in the same run.

- calls: 1,000 small ``add_bytes`` (about 1 KiB each, distinct) then 1,000 ``cat`` of them,
  one at a time, through ``Client`` (unix socket and TCP RPC), ``AsyncClient`` (TCP, asyncio)
  and aioipfs 0.7.1 (TCP; the reference) against one daemon. aioipfs runs in the scratch
  venv tests/interop/test_aioipfs.py makes from the ``aioipfs`` extra (made here if missing;
  the column is skipped with a message when it cannot be).
- executor: no-op tasks on a master and 2 workers through ``Client.executor()``: one at a
  time (``submit(...).result()``, ms per task; also the bare RPC ``task/submit`` +
  ``task/wait``, so the executor's own cost shows) and 1,000 at once (tasks/s), next to the same
  through Celery + Redis (bench/tasks.py's set-up; skipped with a message without them).

Each figure is measured ``--runs`` times; min/median/max are printed with ratios against the
reference of the same run.

    python bench/client.py [--calls 1000] [--tasks 1000] [--sequential 200] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))
sys.path.insert(0, str(BENCH))
from helpers import Daemon, Mesh  # noqa: E402
from tasks import celery_noop  # noqa: E402

from ipfs_kit_node import AsyncClient, Client  # noqa: E402

Figures = dict[str, list[float]]


def payloads(n: int, prefix: str) -> list[bytes]:
    return [f"{prefix}-{i}-".encode() * 40 for i in range(n)]


def sync_calls(client: Client, n: int, prefix: str) -> tuple[float, float]:
    data = payloads(n, prefix)
    client.add_bytes(b"warm up " + prefix.encode())
    started = time.perf_counter()
    cids = [client.add_bytes(p) for p in data]
    added = time.perf_counter() - started
    started = time.perf_counter()
    for cid, payload in zip(cids, data, strict=True):
        assert client.cat(cid) == payload
    return n / added, n / (time.perf_counter() - started)


def async_calls(api: str, repo: Path, n: int, prefix: str) -> tuple[float, float]:
    async def run() -> tuple[float, float]:
        data = payloads(n, prefix)
        async with AsyncClient(api, repo=repo) as client:
            await client.add_bytes(b"warm up " + prefix.encode())
            started = time.perf_counter()
            cids = [await client.add_bytes(p) for p in data]
            added = time.perf_counter() - started
            started = time.perf_counter()
            for cid, payload in zip(cids, data, strict=True):
                assert await client.cat(cid) == payload
            return n / added, n / (time.perf_counter() - started)

    return asyncio.run(run())


def aioipfs_python() -> Path | None:
    sys.path.insert(0, str(BENCH.parent / "tests" / "interop"))
    try:
        import pytest
        from test_aioipfs import aioipfs_python as make

        return make()
    except (Exception, pytest.skip.Exception) as exc:
        print(f"aioipfs unavailable ({exc}): its column is skipped")
        return None


def aioipfs_calls(python: Path, rpc_url: str, n: int, prefix: str) -> tuple[float, float]:
    host, port = rpc_url.removeprefix("http://").rsplit(":", 1)
    out = subprocess.run([str(python), str(BENCH / "client_aioipfs.py"), host, port, str(n),
                          prefix], capture_output=True, text=True, timeout=600, check=True)
    got = json.loads(out.stdout)
    return n / got["add"], n / got["cat"]


def bench_calls(n: int, runs: int) -> Figures:
    figures: Figures = {}
    python = aioipfs_python()
    with tempfile.TemporaryDirectory(prefix="ikn-bc-", dir="/tmp") as d:
        daemon = Daemon(Path(d), role="master").start(env={"IPFS_KIT_LOG_LEVEL": "warning"})
        try:
            url = daemon.rpc_url
            columns: dict[str, Callable[[str], tuple[float, float]]] = {
                "Client (socket)": lambda p: sync_calls(Client(repo=daemon.repo), n, p),
                "Client (TCP)": lambda p: sync_calls(Client(url, repo=daemon.repo), n, p),
                "AsyncClient (TCP)": lambda p: async_calls(url, daemon.repo, n, p),
            }
            if python is not None:
                columns["aioipfs (TCP)"] = lambda p: aioipfs_calls(python, url, n, p)
            names = list(columns)
            for run in range(runs):  # the order turns each run: no column always goes first
                for name in names[run % len(names):] + names[:run % len(names)]:
                    measure = columns[name]
                    add, cat = measure(f"{name}-{run}-{time.time_ns()}")
                    figures.setdefault(f"{name} add/s", []).append(add)
                    figures.setdefault(f"{name} cat/s", []).append(cat)
                    print(f"run {run + 1}: {name:18} add {add:7.0f}/s  cat {cat:7.0f}/s",
                          flush=True)
        finally:
            daemon.kill()
    return figures


def bench_executor(tasks: int, sequential: int, runs: int) -> Figures:
    figures: Figures = {}
    with tempfile.TemporaryDirectory(prefix="ikn-be-", dir="/tmp") as d:
        mesh = Mesh(Path(d), workers=2, leechers=0,
                    env={"IPFS_KIT_TASKS_CONCURRENCY": "32", "IPFS_KIT_LOG_LEVEL": "warning"})
        try:
            client = Client(repo=mesh.master.repo, timeout=300)
            with client.executor() as ex:
                ex.submit("noop").result(60)  # warm up
                for run in range(runs):
                    started = time.perf_counter()
                    for _ in range(sequential):
                        ex.submit("noop").result(60)
                    one = (time.perf_counter() - started) / sequential * 1000
                    started = time.perf_counter()
                    futures = [ex.submit("noop") for _ in range(tasks)]
                    for f in futures:
                        f.result(300)
                    rate = tasks / (time.perf_counter() - started)
                    started = time.perf_counter()
                    for _ in range(sequential):  # the same without the executor: its cost
                        task = client.task.submit("noop")
                        assert client.task.wait(task, 60).state == "done"
                    raw = (time.perf_counter() - started) / sequential * 1000
                    figures.setdefault("RPC submit+wait ms/task", []).append(raw)
                    figures.setdefault("executor ms/task (one at a time)", []).append(one)
                    figures.setdefault("executor tasks/s (batch)", []).append(rate)
                    print(f"run {run + 1}: executor      {one:6.2f} ms/task one at a time "
                          f"(RPC submit+wait {raw:6.2f}), {rate:6.0f} tasks/s for {tasks} at "
                          "once", flush=True)
        finally:
            mesh.close()
    with celery_noop() as noop:
        if noop is None:
            return figures
        for run in range(runs):
            started = time.perf_counter()
            for _ in range(sequential):
                noop.apply_async().get(timeout=60)
            one = (time.perf_counter() - started) / sequential * 1000
            started = time.perf_counter()
            results = [noop.apply_async() for _ in range(tasks)]
            for r in results:
                r.get(timeout=300)
            rate = tasks / (time.perf_counter() - started)
            figures.setdefault("celery ms/task (one at a time)", []).append(one)
            figures.setdefault("celery tasks/s (batch)", []).append(rate)
            print(f"run {run + 1}: celery+redis  {one:6.2f} ms/task one at a time, "
                  f"{rate:6.0f} tasks/s for {tasks} at once", flush=True)
    return figures


def summary(figures: Figures, pairs: list[tuple[str, str]]) -> None:
    print("\nmin / median / max")
    for name, values in figures.items():
        print(f"  {name:36} {min(values):9.2f} {statistics.median(values):9.2f} "
              f"{max(values):9.2f}")
    for ours, ref in pairs:
        if ours in figures and ref in figures:
            ratios = [a / b for a, b in zip(figures[ours], figures[ref], strict=True)]
            print(f"  ratio {ours} / {ref}: min {min(ratios):.2f}x, median "
                  f"{statistics.median(ratios):.2f}x, max {max(ratios):.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--sequential", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--part", choices=("all", "calls", "executor"), default="all")
    args = parser.parse_args()
    figures: Figures = {}
    if args.part in ("all", "calls"):
        figures |= bench_calls(args.calls, args.runs)
    if args.part in ("all", "executor"):
        figures |= bench_executor(args.tasks, args.sequential, args.runs)
    pairs = [(f"{c} {verb}/s", f"aioipfs (TCP) {verb}/s")
             for c in ("Client (socket)", "Client (TCP)", "AsyncClient (TCP)")
             for verb in ("add", "cat")]
    pairs += [("executor ms/task (one at a time)", "celery ms/task (one at a time)"),
              ("executor ms/task (one at a time)", "RPC submit+wait ms/task"),
              ("executor tasks/s (batch)", "celery tasks/s (batch)")]
    summary(figures, pairs)


if __name__ == "__main__":
    main()
