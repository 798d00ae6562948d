"""Task-mesh benchmark: no-op tasks through a master and 2 worker daemons on loopback.

- burst: submit 5,000 tasks at once (one API call on the master), time until all are done.
- latency: a steady 100 tasks/s for 10 s (in 1 s turns with Celery's, both stacks up, so
  the load of a shared machine falls on both alike), each submitted and waited on over the
  API in one request (`task/submit?wait=true`; `--calls 2` submits, then calls `task/wait`);
  submit -> result p50/p99. Celery's side is its one-call idiom, `noop.delay().get()` (the
  result backend's pub/sub tells the client), as a user would write it.

When `redis-server` (Debian) and celery are installed, the same is run with Celery + Redis
(2 prefork worker processes; Redis persisting nothing unless --celery-durable) in this script,
and the ratios are printed. Targets (issue 14): burst >= 5x Celery's tasks/s; at 100 tasks/s
p50 <= 1x and p99 <= 2x Celery's. The CPU a task of each stack is printed too.

    python bench/tasks.py [--burst 5000] [--rate 100] [--seconds 10] [--concurrency 32]
                          [--calls 1|2] [--celery-durable]
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from helpers import Mesh, free_port, wait_until

from ipfs_kit_node.client import Client

BENCH = Path(__file__).resolve().parent
NOOP = b'{"tasks": [{"handler": "noop"}]}'


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))]


@dataclass
class System:
    """One stack under test: its burst rate, ``one()`` (runs a task, returns its submit ->
    result time in ms) and ``pids()`` (its server processes, for their CPU time)."""

    burst_rate: float
    one: Callable[[], float]
    pids: Callable[[], list[int]]
    latencies: list[float] = field(default_factory=list)
    server_cpu: float = 0.0  # seconds, during its steady turns
    client_cpu: float = 0.0  # seconds of the calling threads, during its steady turns

    def timed(self) -> tuple[float, float]:
        cpu = time.thread_time()
        took = self.one()
        return took, time.thread_time() - cpu

    def cpu(self) -> float:
        total = 0.0
        for pid in self.pids():
            with contextlib.suppress(psutil.Error):
                times = psutil.Process(pid).cpu_times()
                total += times.user + times.system
        return total


def steady(rate: float, seconds: float, systems: list[System], slice_s: float = 1.0) -> None:
    """Each system's latencies (ms) at ``rate`` tasks/s, started every 1/rate s (not waiting
    for the previous one), and the CPU its servers and its client calls used. The systems
    take turns, ``slice_s`` each, until each has run ``seconds``: a shared machine's load
    then falls on all of them alike."""
    pools = [concurrent.futures.ThreadPoolExecutor(max_workers=32) for _ in systems]
    try:
        # Every pool thread up, its connection open (ours and Celery's alike), before timing:
        # otherwise the first second measures thread and connection set-up.
        for pool, system in zip(pools, systems, strict=True):
            list(pool.map(lambda _, one=system.one: one(), range(64)))
        per_slice = max(1, round(rate * slice_s))
        for _ in range(max(1, round(seconds / slice_s))):
            for pool, system in zip(pools, systems, strict=True):
                server_cpu = system.cpu()
                started = time.perf_counter()
                futures = []
                for i in range(per_slice):
                    delay = started + i / rate - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    futures.append(pool.submit(system.timed))
                for future in futures:  # all done before the next one's turn
                    took, cpu = future.result()
                    system.latencies.append(took)
                    system.client_cpu += cpu
                system.server_cpu += system.cpu() - server_cpu
    finally:
        for pool in pools:
            pool.shutdown()


# -- ours --------------------------------------------------------------------------------------


@contextlib.contextmanager
def ours(burst: int, concurrency: int, calls: int) -> Iterator[System]:
    """A master and 2 workers."""
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
                if calls == 1:
                    info = c.call("task/submit", {"wait": "true"}, body=NOOP)["Tasks"][0]
                else:
                    answer = c.call("task/submit", body=NOOP)
                    info = c.call("task/wait", {"arg": answer["Accepted"][0]})
                took = (time.perf_counter() - t0) * 1000
                assert info["State"] == "done"
                return took

            for _ in range(20):  # warm up connections and code paths
                one()
            yield System(burst_rate, one, lambda: [d.proc.pid for d in mesh.all() if d.proc])
        finally:
            mesh.close()


# -- Celery + Redis ----------------------------------------------------------------------------


@contextlib.contextmanager
def celery_noop(durable: bool = False) -> Iterator[Any]:
    """A redis-server and a Celery worker (2 prefork processes) of its own; yields the no-op
    task (bench/celery_noop.py) and the two PIDs, or None when celery or redis-server is
    missing. ``durable``: Redis appends every write to its AOF and fsyncs it before it
    answers (``appendfsync always``), as our journal does; by default it keeps nothing."""
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
                                   "--save", "", "--dir", d, "--appendonly",
                                   *(["yes", "--appendfsync", "always"] if durable else ["no"])],
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
            yield noop, [server.pid, worker.pid]
        finally:
            worker.terminate()
            worker.wait(30)
            server.terminate()
            server.wait(10)


@contextlib.contextmanager
def celery(burst: int, durable: bool = False) -> Iterator[System | None]:
    with celery_noop(durable) as started_:
        if started_ is None:
            yield None
            return
        noop, pids = started_
        pids = [int(p) for p in pids]
        started = time.perf_counter()
        results = [noop.delay() for _ in range(burst)]
        for r in results:
            r.get(timeout=300)
        burst_rate = burst / (time.perf_counter() - started)

        def one() -> float:
            t0 = time.perf_counter()
            noop.delay().get(timeout=30)
            return (time.perf_counter() - t0) * 1000

        def processes() -> list[int]:  # redis-server, the worker and its pool processes
            with contextlib.suppress(psutil.Error):
                return pids + [c.pid for c in psutil.Process(pids[1]).children(recursive=True)]
            return pids

        for _ in range(20):
            one()
        yield System(burst_rate, one, processes)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--burst", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32,
                        help="tasks.concurrency of each worker (no-ops in flight)")
    parser.add_argument("--calls", type=int, choices=(1, 2), default=1,
                        help="API requests per task at the steady rate: 1 submit?wait=true, "
                             "2 submit then wait")
    parser.add_argument("--celery-durable", action="store_true",
                        help="Redis fsyncs every write before answering (appendfsync always), "
                             "as our task journal does; by default it persists nothing")
    args = parser.parse_args()
    with ours(args.burst, args.concurrency, args.calls) as mine, \
            celery(args.burst, args.celery_durable) as theirs:
        systems = [("ipfs-kit-node", mine)] + ([("celery+redis", theirs)] if theirs else [])
        steady(args.rate, args.seconds, [system for _, system in systems])
    for name, system in systems:
        lat, n = system.latencies, len(system.latencies)
        print(f"{name:14} burst {args.burst}: {system.burst_rate:7.0f} tasks/s | at "
              f"{args.rate:.0f}/s: p50 {statistics.median(lat):5.1f} ms, p99 "
              f"{percentile(lat, 0.99):5.1f} ms | CPU a task: servers "
              f"{system.server_cpu / n * 1000:.2f} ms, client "
              f"{system.client_cpu / n * 1000:.2f} ms")
    if theirs:
        a, b = mine.latencies, theirs.latencies
        p50 = statistics.median(a) / statistics.median(b)
        p99 = percentile(a, 0.99) / percentile(b, 0.99)
        print(f"ratio (ours / celery): burst {mine.burst_rate / theirs.burst_rate:.2f}x "
              f"(target >= 5x); p50 {p50:.2f}x (target <= 1x), p99 {p99:.2f}x (target <= 2x)")


if __name__ == "__main__":
    main()
