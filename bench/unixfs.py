"""UnixFS import benchmark: our importer next to Helia's ipfs-unixfs-importer, same run.

Both import the same 256 MiB file with the same profile in a fresh process that hashes every
block and stores none (ours: ``ipfs-kit-node add --only-hash``; theirs: importer.mjs with a
discarding blockstore), so the figures are the importer's own: MB/s of wall time (process
start included, and the import alone) and peak RSS. Then, for scale, the same file added to a
running daemon (blocks verified, fsynced into the store). Target: >= 1x the js throughput.

    python bench/unixfs.py [--size-mib 256] [--runs 3] [--profile unixfs-v0-2015]

``--folders``: instead, a folder of 10,000 files of 1 KiB (a HAMT under the Kubo profile) and
one of 100,000 entries, imported --only-hash by us and by the JS importer in the same run
(min/median/max seconds, process start included), and the 10,000-file one added to a daemon.

    python bench/unixfs.py --folders [--runs 3] [--profile unixfs-v0-2015]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from helpers import HELIA_DIR, Daemon, ensure_helia_installed, node22

BIN = Path(sys.executable).parent / "ipfs-kit-node"


def run_measured(cmd: list[str]) -> tuple[float, int, str, str]:
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = proc.stdout.read() if proc.stdout else b""  # type: ignore[union-attr]
    err = proc.stderr.read() if proc.stderr else b""  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{cmd[0]} failed: {err.decode()[-500:]}")
    return wall, usage.ru_maxrss, out.decode(), err.decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", default="unixfs-v0-2015")
    parser.add_argument("--folders", action="store_true", help="the big-folder cases")
    args = parser.parse_args()
    ensure_helia_installed()
    if args.folders:
        folders(args)
        return
    size = args.size_mib * 2**20
    with tempfile.TemporaryDirectory(prefix="ikn-bench-", dir="/tmp") as d:
        tmp = Path(d)
        f = tmp / "input.bin"
        with open(f, "wb") as out:
            for _ in range(args.size_mib):
                out.write(os.urandom(2**20))
        ours_cmd = [str(BIN), "add", "-n", "-Q", "--profile", args.profile, str(f)]
        js_cmd = [str(node22()), str(HELIA_DIR / "importer.mjs"), str(f),
                  json.dumps({"profile": args.profile})]
        rows: dict[str, list[tuple[float, float, int]]] = {"ours": [], "js": []}
        cids = {}
        for _ in range(args.runs):
            wall, rss, out, _ = run_measured(ours_cmd)
            rows["ours"].append((wall, wall, rss))
            cids["ours"] = out.strip()
            wall, rss, out, err = run_measured(js_cmd)
            inner = json.loads(err.strip().splitlines()[-1])["ms"] / 1000
            rows["js"].append((wall, inner, rss))
            cids["js"] = json.loads(out.strip().splitlines()[-1])["cid"]
        assert cids["ours"] == cids["js"], cids
        print(f"{args.size_mib} MiB, profile {args.profile}, median of {args.runs}; "
              f"root {cids['ours']} (identical)")
        med = {}
        for name, values in rows.items():
            wall = statistics.median(v[0] for v in values)
            inner = statistics.median(v[1] for v in values)
            rss = statistics.median(v[2] for v in values) / 1024
            med[name] = (size / wall / 1e6, rss)
            print(f"{name:5} {size / wall / 1e6:7.1f} MB/s wall ({size / inner / 1e6:7.1f} MB/s "
                  f"import only), peak RSS {rss:6.1f} MiB")
        print(f"ratio ours/js: throughput {med['ours'][0] / med['js'][0]:.2f}x (target 1x), "
              f"peak RSS {med['ours'][1] / med['js'][1]:.2f}x")

        daemon = Daemon(tmp, name="repo")
        daemon.start(env={"IPFS_KIT_STORAGE_MEMORY_SIZE": "16MiB"})
        try:
            started = time.perf_counter()
            out = subprocess.run([str(BIN), "add", "-Q", "--profile", args.profile, str(f),
                                  "--repo", str(daemon.repo)], capture_output=True, check=True)
            wall = time.perf_counter() - started
            assert out.stdout.decode().strip() == cids["ours"]
            print(f"add into a running daemon (verified, fsynced): {size / wall / 1e6:.1f} MB/s")
        finally:
            daemon.kill()


def _spread(values: list[float]) -> str:
    return (f"min {min(values):6.2f} s, median {statistics.median(values):6.2f} s, "
            f"max {max(values):6.2f} s")


def folders(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="ikn-bench-", dir="/tmp") as d:
        tmp = Path(d)
        cases = [("10,000 files of 1 KiB", tmp / "k10", 10_000, 1024),
                 ("100,000 entries of 8 B", tmp / "k100", 100_000, 8)]
        for _, folder, count, size in cases:
            folder.mkdir()
            for i in range(count):
                (folder / f"{i:06d}").write_bytes(os.urandom(size))
        for label, folder, count, _ in cases:
            ours_cmd = [str(BIN), "add", "-n", "-Q", "-r", "--profile", args.profile,
                        str(folder)]
            js_cmd = [str(node22()), str(HELIA_DIR / "importer.mjs"), str(folder),
                      json.dumps({"profile": args.profile})]
            times: dict[str, list[float]] = {"ours": [], "js": []}
            cids = {}
            for run in range(args.runs):
                wall, _, out, _ = run_measured(ours_cmd)
                times["ours"].append(wall)
                cids["ours"] = out.strip()
                if run and count > 10_000:
                    continue  # the JS importer takes minutes for 100,000 entries: once
                wall, _, out, _ = run_measured(js_cmd)
                times["js"].append(wall)
                cids["js"] = json.loads(out.strip().splitlines()[-1])["cid"]
            assert cids["ours"] == cids["js"], cids
            print(f"{label}, --only-hash, profile {args.profile}, root {cids['ours']} "
                  "(identical)")
            for name, values in times.items():
                print(f"  {name:5} {_spread(values)}")
            ratio = statistics.median(times["ours"]) / statistics.median(times["js"])
            print(f"  ratio ours/js (median time): {ratio:.2f}x")
        daemon = Daemon(tmp, name="repo")
        daemon.start()
        try:
            spent = []
            for _ in range(args.runs):
                started = time.perf_counter()
                subprocess.run([str(BIN), "add", "-Q", "-r", "--profile", args.profile,
                                str(cases[0][1]), "--repo", str(daemon.repo)],
                               capture_output=True, check=True)
                spent.append(time.perf_counter() - started)
            print(f"{cases[0][0]} added to a running daemon: {_spread(spent)}")
        finally:
            daemon.kill()


if __name__ == "__main__":
    main()
