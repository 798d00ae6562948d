"""RPC ``add`` throughput (the RPC section of the HTTP benchmarks; bench/http.py holds the
gateway's): a file POSTed as multipart to ``/api/v0/add`` on a daemon's TCP RPC, MB/s
min/median/max over --runs, next to ``ipfs-kit-node add -n`` (the importer alone, no HTTP or
store) on the same bytes in the same run, printed as a ratio.

    python bench/http_rpc.py [--size-mib 64] [--runs 3]
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/http.py would hide the stdlib's http package: keep this folder off the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import httpx  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from helpers import BIN, Daemon  # noqa: E402

BOUNDARY = "ikn-bench-boundary"


def multipart(path: Path) -> Iterator[bytes]:
    yield (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; "
           f"filename=\"{path.name}\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            yield chunk
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def spread(values: list[float]) -> str:
    return (f"min {min(values):.1f}  median {statistics.median(values):.1f}  "
            f"max {max(values):.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    size = args.size_mib << 20
    with tempfile.TemporaryDirectory(prefix="ikn-bench-", dir="/tmp") as tmp:
        root = Path(tmp)
        d = Daemon(root).start()
        try:
            rpc, ref = [], []
            for run in range(args.runs):
                path = root / f"f{run}.bin"
                path.write_bytes(os.urandom(size))
                started = time.monotonic()
                r = httpx.post(f"{d.rpc_url}/api/v0/add", params={"pin": "false"},
                               content=multipart(path), timeout=600,
                               headers={"content-type":
                                        f"multipart/form-data; boundary={BOUNDARY}"})
                r.raise_for_status()
                rpc.append(size / 1e6 / (time.monotonic() - started))
                started = time.monotonic()
                subprocess.run([str(BIN), "add", "-n", "-Q", str(path)], check=True,
                               capture_output=True, timeout=600)
                ref.append(size / 1e6 / (time.monotonic() - started))
                path.unlink()
        finally:
            d.stop()
    print(f"RPC add        {args.size_mib} MiB: {spread(rpc)} MB/s")
    print(f"add -n (local) {args.size_mib} MiB: {spread(ref)} MB/s")
    print(f"ratio RPC/add -n (medians): {statistics.median(rpc) / statistics.median(ref):.2f}")


if __name__ == "__main__":
    main()
