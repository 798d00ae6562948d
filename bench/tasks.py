"""Task-mesh benchmark: no-op tasks through a master and 2 worker daemons on loopback.

- burst: submit 5,000 tasks at once (one API call on the master), time until all are done.
- latency: a steady 100 tasks/s for 10 s, each submitted and waited on over the API;
  submit -> result p50/p99.

When `redis-server` (Debian) and celery are installed, the same is run with Celery + Redis
(2 prefork worker processes) in this script, and the ratios are printed. Targets: burst
>= 1.0x Celery's tasks/s; p50 <= 10 ms and p99 <= 50 ms at 100 tasks/s.

    python bench/tasks.py [--burst 5000] [--rate 100] [--seconds 10] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from helpers import Mesh, free_port, wait_until

from ipfs_kit_node.client import Client

BENCH = Path(__file__).resolve().parent


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))]


def steady(rate: float, seconds: float, one: Callable[[], float]) -> list[float]:
    """Start one task every 1/rate s (not waiting for the previous one); latencies in ms."""
    n = int(rate * seconds)
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
        # Every pool thread up, its connection open (ours and Celery's alike), before timing:
        # otherwise the first second measures thread and connection set-up.
        list(pool.map(lambda _: one(), range(64)))
        started = time.perf_counter()
        futures = []
        for i in range(n):
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(one))
        return [f.result() for f in futures]


# -- ours --------------------------------------------------------------------------------------


def run_ours(burst: int, rate: float, seconds: float, concurrency: int
             ) -> tuple[float, list[float]]:
    with tempfile.TemporaryDirectory(prefix="ikn-tasks-", dir="/tmp") as d:
        mesh = Mesh(Path(d), workers=2, leechers=0,
                    env={"IPFS_KIT_TASKS_CONCURRENCY": str(concurrency),
                         "IPFS_KIT_LOG_LEVEL": "warning"})
        master = mesh.master
        try:
            with Client(master.repo / "api.sock", repo=master.repo, timeout=300) as client:
                body = json.dumps({"tasks": [{"handler": "noop"}] * burst}).encode()
                started = time.perf_counter()
                client.call("task/submit", body=body)
                wait_until(lambda: client.call("task/stats")["States"].get("done", 0) >= burst,
                           300, 0.02)
                burst_rate = burst / (time.perf_counter() - started)

            local = threading.local()  # one API connection per thread, as Celery keeps one

            def one() -> float:
                if not hasattr(local, "client"):
                    local.client = Client(master.repo / "api.sock", repo=master.repo)
                c = local.client
                t0 = time.perf_counter()
                answer = c.call("task/submit", body=b'{"tasks": [{"handler": "noop"}]}')
                info = c.call("task/wait", {"arg": answer["Accepted"][0]})
                took = (time.perf_counter() - t0) * 1000
                assert info["State"] == "done"
                return took

            for _ in range(20):  # warm up connections and code paths
                one()
            return burst_rate, steady(rate, seconds, one)
        finally:
            mesh.close()


# -- Celery + Redis ----------------------------------------------------------------------------


@contextlib.contextmanager
def celery_noop() -> Iterator[Any]:
    """A redis-server and a Celery worker (2 prefork processes) of its own; yields the no-op
    task (bench/celery_noop.py), or None when celery or redis-server is missing."""
    redis = shutil.which("redis-server")
    try:
        import celery  # noqa: F401
    except ImportError:
        redis = None
    if redis is None:
        print("celery or redis-server not installed: Celery comparison skipped "
              "(apt install redis-server; pip install 'celery[redis]')")
        yield None
        return
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    env = {**os.environ, "BENCH_REDIS_URL": url, "PYTHONPATH": str(BENCH)}
    with tempfile.TemporaryDirectory(prefix="ikn-celery-", dir="/tmp") as d:
        server = subprocess.Popen([redis, "--port", str(port), "--bind", "127.0.0.1",
                                   "--save", "", "--appendonly", "no", "--dir", d],
                                  stdout=subprocess.DEVNULL)
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "celery_noop", "worker", "--pool=prefork",
             "--concurrency=2", "--loglevel=WARNING", "--without-gossip", "--without-mingle",
             "--without-heartbeat"], env=env, cwd=BENCH, stdout=subprocess.DEVNULL,
            stderr=open(Path(d) / "worker.log", "wb"))  # noqa: SIM115
        try:
            os.environ["BENCH_REDIS_URL"] = url
            sys.path.insert(0, str(BENCH))
            from celery_noop import app, noop

            app.conf.broker_url = app.conf.result_backend = url
            noop.delay().get(timeout=60)  # the worker is up
            yield noop
        finally:
            worker.terminate()
            worker.wait(30)
            server.terminate()
            server.wait(10)


def run_celery(burst: int, rate: float, seconds: float) -> tuple[float, list[float]] | None:
    with celery_noop() as noop:
        if noop is None:
            return None
        started = time.perf_counter()
        results = [noop.delay() for _ in range(burst)]
        for r in results:
            r.get(timeout=300)
        burst_rate = burst / (time.perf_counter() - started)

        def one() -> float:
            t0 = time.perf_counter()
            noop.delay().get(timeout=30)
            return (time.perf_counter() - t0) * 1000

        for _ in range(20):
            one()
        return burst_rate, steady(rate, seconds, one)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--burst", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32,
                        help="tasks.concurrency of each worker (no-ops in flight)")
    args = parser.parse_args()
    ours = run_ours(args.burst, args.rate, args.seconds, args.concurrency)
    theirs = run_celery(args.burst, args.rate, args.seconds)
    rows = [("ipfs-kit-node", ours)] + ([("celery+redis", theirs)] if theirs else [])
    for name, (burst_rate, lat) in rows:
        print(f"{name:14} burst {args.burst}: {burst_rate:7.0f} tasks/s | at {args.rate:.0f}/s: "
              f"p50 {statistics.median(lat):5.1f} ms, p99 {percentile(lat, 0.99):5.1f} ms")
    if theirs:
        print(f"ratio (ours / celery): burst {ours[0] / theirs[0]:.2f}x (target >= 1.0x); "
              f"p50 {statistics.median(ours[1]) / statistics.median(theirs[1]):.2f}x, "
              f"p99 {percentile(ours[1], 0.99) / percentile(theirs[1], 0.99):.2f}x")
    lat = ours[1]
    print(f"targets: p50 {statistics.median(lat):.1f} <= 10 ms, "
          f"p99 {percentile(lat, 0.99):.1f} <= 50 ms")


if __name__ == "__main__":
    main()
