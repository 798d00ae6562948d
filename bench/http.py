"""HTTP benchmarks: the gateway next to ``python -m http.server`` serving the same bytes from
disk, and RPC ``add`` next to ``add -n``, each in the same run.

Gateway section: a 256 MiB file downloaded with curl (MB/s, min/median/max of --runs), and
--requests random picks among 1,000 4 KiB files fetched by 16 concurrent clients (curl
--parallel, one connection each: a Python client capped both servers near 800 requests/s
here). http.server serves the same files from a folder on disk; the gateway serves them from
a daemon they were added to (`add -r`, CIDv1 raw leaves). Runs alternate between the two
servers, and each server's CPU time is printed too (per 256 MiB, per request): on a shared,
noisy machine it varies less than wall-clock rates. Targets: >= 1x http.server's MB/s,
>= 2x its requests/s. The daemon's memory tier (256 MiB by default) holds the big file after
the warm-up read; ``--memory-size 16MiB`` measures blocks read from disk instead (each one
hashed again on a worker thread before it is sent).

RPC section: a file POSTed as multipart to ``/api/v0/add`` on a daemon's TCP RPC (MB/s,
min/median/max of --runs), next to ``ipfs-kit-node add -n`` (the importer alone, no HTTP or
store) on the same bytes, printed as a ratio.

    python bench/http.py [--part gateway|rpc|all] [--size-mib 256] [--runs 5]
                         [--requests 4000] [--rpc-size-mib 64] [--memory-size SIZE]
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named http.py: keep its folder off the path, or it hides the stdlib's http.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import httpx  # noqa: E402
import psutil  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from helpers import BIN, Daemon, free_port  # noqa: E402

BOUNDARY = "ikn-bench-boundary"


def spread(values: list[float]) -> str:
    return (f"min {min(values):.1f}  median {statistics.median(values):.1f}  "
            f"max {max(values):.1f}")


def ratio(ours: list[float], ref: list[float]) -> float:
    return statistics.median(ours) / statistics.median(ref)


def curl_mbps(url: str, size: int) -> float:
    started = time.perf_counter()
    subprocess.run(["curl", "-sf", "-o", "/dev/null", url], check=True, timeout=600)
    return size / (time.perf_counter() - started) / 1e6


def requests_per_s(urls: list[str], clients: int, requests: int, seed: int) -> float:
    """``requests`` random picks of ``urls`` by ``clients`` concurrent keep-alive clients."""
    rng = random.Random(seed)
    with tempfile.NamedTemporaryFile("w", suffix=".curl", dir="/tmp") as config:
        config.write("".join(f'url = "{rng.choice(urls)}"\noutput = "/dev/null"\n'
                             for _ in range(requests)))
        config.flush()
        started = time.perf_counter()
        subprocess.run(["curl", "-sf", "--parallel", "--parallel-immediate", "--parallel-max",
                        str(clients), "-K", config.name], check=True, timeout=600,
                       stderr=subprocess.DEVNULL)
        return requests / (time.perf_counter() - started)


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def gateway(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="ikn-bench-http-", dir="/tmp") as tmp:
        root = Path(tmp)
        served = root / "served"
        (served / "small").mkdir(parents=True)
        size = args.size_mib << 20
        with open(served / "big.bin", "wb") as out:
            for _ in range(args.size_mib):
                out.write(os.urandom(1 << 20))
        for i in range(1000):
            (served / "small" / f"f{i:04d}.bin").write_bytes(os.urandom(4096))

        port = free_port()
        httpd = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind",
                                  "127.0.0.1", "--directory", str(served)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp)
        env = {"IPFS_KIT_STORAGE_SYNC": "false"}
        if args.memory_size:
            env["IPFS_KIT_STORAGE_MEMORY_SIZE"] = args.memory_size
        node = Daemon(root, name="bench").start(env=env)
        try:
            cid = node.cli("add", "-r", "-Q", "--cid-version", "1", str(served),
                           timeout=900).stdout.strip()
            ref = f"http://127.0.0.1:{port}"
            ours = f"{node.gateway_url}/ipfs/{cid}"
            assert node.proc is not None
            procs = {ref: psutil.Process(httpd.pid), ours: psutil.Process(node.proc.pid)}
            for base in (ref, ours):  # both answer, and the caches are warm
                httpx.get(f"{base}/small/f0000.bin", timeout=30).raise_for_status()
                curl_mbps(f"{base}/big.bin", size)

            mbps: dict[str, list[float]] = {ref: [], ours: []}
            cpu: dict[str, list[float]] = {ref: [], ours: []}
            for _ in range(args.runs):  # alternating, so a busy spell hits both
                for base in (ref, ours):
                    before = cpu_seconds(procs[base])
                    mbps[base].append(curl_mbps(f"{base}/big.bin", size))
                    cpu[base].append((cpu_seconds(procs[base]) - before) * (256 << 20) / size)
            print(f"gateway: {args.size_mib} MiB file with curl, {args.runs} runs "
                  "(MB/s; server CPU s per 256 MiB, median)")
            for name, base in (("http.server", ref), ("gateway", ours)):
                print(f"  {name:12s} {spread(mbps[base])}   CPU {statistics.median(cpu[base]):.2f}")
            print(f"  ratio (median)  {ratio(mbps[ours], mbps[ref]):.2f}x  (target >= 1x)")

            names = [f"small/f{i:04d}.bin" for i in range(1000)]
            rqs: dict[str, list[float]] = {ref: [], ours: []}
            cpu = {ref: [], ours: []}
            for run in range(args.runs):
                for base in (ref, ours):
                    before = cpu_seconds(procs[base])
                    rqs[base].append(requests_per_s([f"{base}/{n}" for n in names], 16,
                                                    args.requests, run))
                    cpu[base].append((cpu_seconds(procs[base]) - before) / args.requests * 1e3)
            print(f"gateway: 4 KiB files, 16 clients, {args.requests} requests, {args.runs} runs "
                  "(requests/s; server CPU ms per request, median)")
            for name, base in (("http.server", ref), ("gateway", ours)):
                print(f"  {name:12s} {spread(rqs[base])}   CPU {statistics.median(cpu[base]):.3f}")
            print(f"  ratio (median)  {ratio(rqs[ours], rqs[ref]):.2f}x  (target >= 2x)")
        finally:
            node.kill()
            httpd.terminate()
            httpd.wait(10)


def multipart(path: Path) -> Iterator[bytes]:
    yield (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; "
           f"filename=\"{path.name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
           ).encode()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            yield chunk
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def rpc(args: argparse.Namespace) -> None:
    size = args.rpc_size_mib << 20
    with tempfile.TemporaryDirectory(prefix="ikn-bench-rpc-", dir="/tmp") as tmp:
        root = Path(tmp)
        d = Daemon(root).start()
        try:
            ours, ref = [], []
            for run in range(args.runs):
                path = root / f"f{run}.bin"
                path.write_bytes(os.urandom(size))
                started = time.monotonic()
                r = httpx.post(f"{d.rpc_url}/api/v0/add", params={"pin": "false"},
                               content=multipart(path), timeout=600,
                               headers={"content-type":
                                        f"multipart/form-data; boundary={BOUNDARY}"})
                r.raise_for_status()
                ours.append(size / 1e6 / (time.monotonic() - started))
                started = time.monotonic()
                subprocess.run([str(BIN), "add", "-n", "-Q", str(path)], check=True,
                               capture_output=True, timeout=600)
                ref.append(size / 1e6 / (time.monotonic() - started))
                path.unlink()
        finally:
            d.stop()
    print(f"rpc: add of a {args.rpc_size_mib} MiB file, {args.runs} runs (MB/s)")
    print(f"  add -n (local)  {spread(ref)}")
    print(f"  RPC add         {spread(ours)}")
    print(f"  ratio (median)  {statistics.median(ours) / statistics.median(ref):.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("gateway", "rpc", "all"), default="all")
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--memory-size", default="",
                        help="the daemon's memory tier (e.g. 16MiB: the big file from disk)")
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--rpc-size-mib", type=int, default=64)
    args = parser.parse_args()
    if args.part in ("gateway", "all"):
        gateway(args)
    if args.part in ("rpc", "all"):
        rpc(args)


if __name__ == "__main__":
    main()
