"""Startup benchmark: exec -> READY=1, idle RSS after 10 s and SIGTERM -> exit, ours next to a
bare py-libp2p host.

Both run as fresh processes in this same script and report readiness the same way (a datagram
on NOTIFY_SOCKET), so the ratio is what our daemon adds on top of the library.
Targets: ready <= 1 s, idle RSS <= 100 MiB, SIGTERM -> exit <= 2 s (the tests only check 10 s).

    python bench/startup.py [--runs 3] [--idle 10]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BARE_HOST = r"""
import os, socket, trio, multiaddr
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair

async def main():
    host = new_host(key_pair=create_new_key_pair())
    async with host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.sendto(b"READY=1", os.environ["NOTIFY_SOCKET"])
        await trio.sleep_forever()

trio.run(main)
"""


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(cmd: list[str], idle: float, tmp: Path) -> tuple[float, float, float]:
    path = tmp / f"notify-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(30)
    env = {**os.environ, "NOTIFY_SOCKET": str(path), "IPFS_KIT_ROUTING_MDNS": "false"}
    started = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while b"READY=1" not in sock.recv(4096):
            pass
        ready = time.monotonic() - started
        time.sleep(idle)
        rss = rss_mib(proc.pid)
        stopping = time.monotonic()
        proc.terminate()
        proc.wait(30)
        return ready, rss, time.monotonic() - stopping
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--idle", type=float, default=10.0)
    args = parser.parse_args()
    exe = Path(sys.executable).parent / "ipfs-kit-node"
    results: dict[str, list[tuple[float, float, float]]] = {"ours": [], "bare py-libp2p": []}
    with tempfile.TemporaryDirectory(prefix="ikn-bench-", dir="/tmp") as d:
        tmp = Path(d)
        for run in range(args.runs):
            ours = [str(exe), "--role", "worker", "--repo", str(tmp / f"repo{run}"),
                    "--listen", "/ip4/127.0.0.1/tcp/0"]
            results["ours"].append(measure(ours, args.idle, tmp))
            results["bare py-libp2p"].append(measure([sys.executable, "-c", BARE_HOST],
                                                     args.idle, tmp))
    print(f"{'':16} {'exec->READY':>18} {'idle RSS':>10} {'SIGTERM->exit':>22}"
          f"   (min/median/max of {args.runs})")
    med: dict[str, tuple[float, ...]] = {}
    for name, runs in results.items():
        cols = list(zip(*runs, strict=True))
        med[name] = tuple(statistics.median(c) for c in cols)
        ready, rss, stop = (sorted(c) for c in cols)
        print(f"{name:16} {_span(ready, 1000, 'ms'):>18} {statistics.median(rss):7.1f} MiB "
              f"{_span(stop, 1000, 'ms'):>22}")
    (r_ours, m_ours, s_ours), (r_bare, m_bare, _) = med["ours"], med["bare py-libp2p"]
    print(f"ratio ours/bare: ready {r_ours / r_bare:.2f}x, RSS {m_ours / m_bare:.2f}x")
    print(f"targets: ready <= 1000 ms: {'met' if r_ours <= 1 else 'MISSED'}; "
          f"idle RSS <= 100 MiB: {'met' if m_ours <= 100 else 'MISSED'}; "
          f"SIGTERM <= 2000 ms: {'met' if s_ours <= 2 else 'MISSED'}")


def _span(values: list[float], scale: float, unit: str) -> str:
    low, mid, high = values[0], statistics.median(values), values[-1]
    return f"{low * scale:.0f}/{mid * scale:.0f}/{high * scale:.0f} {unit}"


if __name__ == "__main__":
    main()
