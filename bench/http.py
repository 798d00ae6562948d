"""HTTP benchmarks: the gateway next to ``python -m http.server`` serving the same bytes from
disk, and RPC ``add`` next to ``add -n``, each in the same run.

Gateway section: a 256 MiB file downloaded with curl (MB/s, min/median/max of --runs), and
4 KiB files fetched by 16 concurrent clients for --seconds (requests/s). http.server serves
the same files from a folder on disk; the gateway serves them from a daemon they were added
to (`add -r`, CIDv1 raw leaves). Targets: >= 1x http.server's MB/s, >= 2x its requests/s.

RPC section: a file POSTed as multipart to ``/api/v0/add`` on a daemon's TCP RPC (MB/s,
min/median/max of --runs), next to ``ipfs-kit-node add -n`` (the importer alone, no HTTP or
store) on the same bytes, printed as a ratio.

    python bench/http.py [--part gateway|rpc|all] [--size-mib 256] [--runs 3] [--seconds 5]
                         [--rpc-size-mib 64]
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
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import httpx  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from helpers import BIN, Daemon, free_port  # noqa: E402

BOUNDARY = "ikn-bench-boundary"


def spread(values: list[float]) -> str:
    return (f"min {min(values):.1f}  median {statistics.median(values):.1f}  "
            f"max {max(values):.1f}")


def curl_mbps(url: str, size: int) -> float:
    started = time.perf_counter()
    subprocess.run(["curl", "-sf", "-o", "/dev/null", url], check=True, timeout=600)
    return size / (time.perf_counter() - started) / 1e6


def requests_per_s(urls: list[str], clients: int, seconds: float) -> float:
    """``clients`` threads, each with its own keep-alive connection, for ``seconds``."""
    count = [0] * clients
    stop = time.monotonic() + seconds

    def work(i: int) -> None:
        rng = random.Random(i)
        with httpx.Client(timeout=30) as client:
            while time.monotonic() < stop:
                r = client.get(rng.choice(urls))
                assert r.status_code == 200 and len(r.content) == 4096
                count[i] += 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(count) / (time.monotonic() - started)


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
        node = Daemon(root, name="bench").start(env={"IPFS_KIT_STORAGE_SYNC": "false"})
        try:
            cid = node.cli("add", "-r", "-Q", "--cid-version", "1", str(served),
                           timeout=900).stdout.strip()
            ref = f"http://127.0.0.1:{port}"
            ours = f"{node.gateway_url}/ipfs/{cid}"
            for base in (ref, ours):  # both answer, and the caches are warm
                httpx.get(f"{base}/small/f0000.bin", timeout=30).raise_for_status()
                curl_mbps(f"{base}/big.bin", size)

            print(f"gateway: {args.size_mib} MiB file with curl, {args.runs} runs (MB/s)")
            ref_mb = [curl_mbps(f"{ref}/big.bin", size) for _ in range(args.runs)]
            our_mb = [curl_mbps(f"{ours}/big.bin", size) for _ in range(args.runs)]
            print(f"  http.server  {spread(ref_mb)}")
            print(f"  gateway      {spread(our_mb)}")
            print(f"  ratio (median)  {statistics.median(our_mb) / statistics.median(ref_mb):.2f}x"
                  "  (target >= 1x)")

            print(f"gateway: 4 KiB files, 16 clients, {args.seconds:.0f} s, {args.runs} runs "
                  "(requests/s)")
            names = [f"small/f{i:04d}.bin" for i in range(1000)]
            ref_rq = [requests_per_s([f"{ref}/{n}" for n in names], 16, args.seconds)
                      for _ in range(args.runs)]
            our_rq = [requests_per_s([f"{ours}/{n}" for n in names], 16, args.seconds)
                      for _ in range(args.runs)]
            print(f"  http.server  {spread(ref_rq)}")
            print(f"  gateway      {spread(our_rq)}")
            print(f"  ratio (median)  {statistics.median(our_rq) / statistics.median(ref_rq):.2f}x"
                  "  (target >= 2x)")
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
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rpc-size-mib", type=int, default=64)
    args = parser.parse_args()
    if args.part in ("gateway", "all"):
        gateway(args)
    if args.part in ("rpc", "all"):
        rpc(args)


if __name__ == "__main__":
    main()
