"""The local data path as a user times it: CLI command latency, and `add`/`cat`/`get` of a
64 MiB and a 1 GiB file on one running daemon, next to `cat FILE > /dev/null` and `sha256sum
FILE` of the same bytes in the same run (the floor a disk-speed path is measured against).

Every figure is wall time of the real CLI process (its start included), min/median/max of
--runs. The CLI runs with its bytecode cached, as an installed package has it (pip compiles it
at install): PYTHONDONTWRITEBYTECODE is dropped for the commands timed here, else every run of
an editable checkout compiles ~1 MB of source again (~20 ms a command). `add` is durable (the
daemon's default `[storage] sync = true`: each block fsynced before it is acknowledged) and
stores new blocks each run (a fresh file per run; the last run's pin is dropped and GC'd
first). `add` passes the file open to the daemon (it reads and hashes it: the CLI's path for
one file on this host); `add (upload)` is the CLI's import and upload of the blocks (as for a
folder, or a daemon elsewhere), to the second daemon. `cat` goes to /dev/null; `get` writes
the file to a folder. The memory tier is left at its default, and a second `cat` line runs with the
memory tier off (IPFS_KIT_STORAGE_MEMORY_SIZE=0): every block then comes from its file.
Targets (issue 14): add >= 250 MB/s, cat/get >= 500 MB/s on the 64 MiB file. The Go Kubo
core's `AddFile` of the same file (tests/kubo/harness.py: its durable flatfs, pinned) is timed
in the same run when the wheel can be installed, and the adds printed against it.

    python bench/localpath.py [--runs 3] [--sizes 64,1024] [--latency-runs 10]

`task submit` is timed against a master started for it (a worker forwards to one).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from helpers import BIN, Daemon
from kubo.harness import KuboPeer, installable


def spread(values: list[float], unit: str = "") -> str:
    return (f"min {min(values):8.1f}  median {statistics.median(values):8.1f}  "
            f"max {max(values):8.1f} {unit}")


def timed(cmd: list[str], *, stdout: int | None = subprocess.DEVNULL,
          env: dict[str, str] | None = None) -> tuple[float, str]:
    full_env = {**os.environ, **(env or {})}
    full_env.pop("PYTHONDONTWRITEBYTECODE", None)  # cached bytecode, as installed (see above)
    started = time.perf_counter()
    out = subprocess.run(cmd, stdout=subprocess.PIPE if stdout is None else stdout,
                         stderr=subprocess.PIPE, check=False, timeout=1800, env=full_env)
    took = time.perf_counter() - started
    if out.returncode:
        raise RuntimeError(f"{cmd} exited {out.returncode}: {out.stderr.decode()[-2000:]}")
    return took, (out.stdout or b"").decode()


def write_random(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        for _ in range(size >> 20):
            f.write(os.urandom(1 << 20))
        f.flush()
        os.fsync(f.fileno())


def latency(node: Daemon, master: Daemon, runs: int) -> None:
    print(f"CLI command latency (wall ms, {runs} runs)")
    rows: list[tuple[str, list[str]]] = [
        ("python -c pass", [sys.executable, "-c", "pass"]),
        ("id", [str(BIN), "id", "--repo", str(node.repo)]),
        ("pin ls", [str(BIN), "pin", "ls", "--repo", str(node.repo)]),
        ("repo stat", [str(BIN), "repo", "stat", "--repo", str(node.repo)]),
        ("task list", [str(BIN), "task", "list", "--repo", str(master.repo)]),
        ("task submit", [str(BIN), "task", "submit", "sha256", "--repo", str(master.repo)]),
    ]
    for name, cmd in rows:
        times = [timed(cmd)[0] * 1000 for _ in range(runs)]
        print(f"  {name:16s} {spread(times, 'ms')}")


def mbps(size: int, seconds: list[float]) -> list[float]:
    return [size / s / 1e6 for s in seconds]


def daemon_cpu(node: Daemon) -> float:
    assert node.proc is not None
    times = psutil.Process(node.proc.pid).cpu_times()
    return float(times.user + times.system)


def one_size(node: Daemon, cold: Daemon, root: Path, size_mib: int, runs: int,
             kubo: KuboPeer | None = None) -> None:
    size = size_mib << 20
    cli = [str(BIN)]
    rows: dict[str, list[float]] = {k: [] for k in (
        "cat FILE", "sha256sum FILE", "add -n", "add", "add (upload)", "Kubo core AddFile",
        "cat", "cat (no memory tier)", "get")}
    if kubo is None:
        del rows["Kubo core AddFile"]
    cpu: dict[str, list[float]] = {k: [] for k in ("add", "add (upload)", "cat",
                                                   "cat (no memory tier)", "get")}

    def daemon_timed(name: str, n: Daemon, cmd: list[str], **kw: Any) -> tuple[float, str]:
        before = daemon_cpu(n)
        took, out = timed(cmd, **kw)
        rows[name].append(took)
        cpu[name].append(daemon_cpu(n) - before)
        return took, out
    previous: str | None = None
    for run in range(runs):
        src = root / f"in-{size_mib}-{run}.bin"
        write_random(src, size)
        subprocess.run(["cat", str(src)], stdout=subprocess.DEVNULL, check=True)  # page cache
        rows["cat FILE"].append(timed(["cat", str(src)])[0])
        rows["sha256sum FILE"].append(timed(["sha256sum", str(src)])[0])
        rows["add -n"].append(timed([*cli, "add", "-n", "-Q", str(src)])[0])
        if previous is not None:  # the last run's blocks go, so each add stores new ones
            for n in (node, cold):
                n.cli("pin", "rm", previous, timeout=600)
                n.cli("repo", "gc", timeout=600)
        # Each durable add starts with nothing else waiting to be written: ext4 has one
        # journal, so the first fsync of whichever add ran next paid for the writes before it
        # (the GC's, the other add's).
        os.sync()
        _, out = daemon_timed("add", node, [*cli, "add", "-Q", "--repo", str(node.repo),
                                            str(src)], stdout=None)
        cid = out.strip()
        previous = cid
        daemon_timed("cat", node, [*cli, "cat", "--repo", str(node.repo), cid])
        if kubo is not None:  # the Go reference, in its own process (durable flatfs, pinned)
            os.sync()
            started = time.perf_counter()
            kubo.add_file(src)
            rows["Kubo core AddFile"].append(time.perf_counter() - started)
        # --max-links 174 (Kubo's value: the same DAG) keeps the CLI on the upload path
        os.sync()
        daemon_timed("add (upload)", cold, [*cli, "add", "-Q", "--max-links", "174", "--repo",
                                            str(cold.repo), str(src)])
        daemon_timed("cat (no memory tier)", cold, [*cli, "cat", "--repo", str(cold.repo), cid])
        out_dir = root / "got"
        out_dir.mkdir(exist_ok=True)
        daemon_timed("get", node, [*cli, "get", "--repo", str(node.repo), "-o",
                                   str(out_dir / "f"), cid])
        if (out_dir / "f").stat().st_size != size:
            raise RuntimeError("get wrote the wrong size")
        shutil.rmtree(out_dir)
        src.unlink()
    print(f"{size_mib} MiB file, {runs} runs (MB/s, wall of the whole command)")
    for name, seconds in rows.items():
        line = f"  {name:22s} {spread(mbps(size, seconds), 'MB/s')}"
        if name in cpu:  # steadier than wall time on a shared machine
            line += f"  daemon CPU {statistics.median(cpu[name]):.2f} s"
        print(line)
    ref = statistics.median(mbps(size, rows["sha256sum FILE"]))
    for name in ("add", "add (upload)", "cat", "cat (no memory tier)", "get"):
        ours = statistics.median(mbps(size, rows[name]))
        print(f"  {name} / sha256sum (median)  {ours / ref:.2f}x")
    if kubo is not None:
        ref = statistics.median(mbps(size, rows["Kubo core AddFile"]))
        for name in ("add", "add (upload)"):
            ours = statistics.median(mbps(size, rows[name]))
            print(f"  {name} / Kubo core AddFile (median)  {ours / ref:.2f}x")



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--latency-runs", type=int, default=10)
    parser.add_argument("--sizes", default="64,1024", help="file sizes in MiB, comma-separated")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ikn-bench-local-", dir="/tmp") as tmp:
        root = Path(tmp)
        big = max(int(s) for s in args.sizes.split(","))
        budget = str(4 * big << 20)
        node = Daemon(root, name="node").start(env={"IPFS_KIT_STORAGE_MAX_SIZE": budget})
        cold = Daemon(root, name="cold").start(env={"IPFS_KIT_STORAGE_MEMORY_SIZE": "0",
                                                    "IPFS_KIT_STORAGE_MAX_SIZE": budget})
        master = Daemon(root, role="master", name="master").start()
        stoppers: list[Callable[[], object]] = [node.stop, cold.stop, master.stop]
        kubo = None
        if (reason := installable()) is not None:
            print(f"Kubo core AddFile skipped: {reason}")
        else:
            kubo = KuboPeer(root / "kubo").start()
            stoppers.append(kubo.stop)
        try:
            latency(node, master, args.latency_runs)
            master.stop()
            for size_mib in (int(s) for s in args.sizes.split(",")):
                one_size(node, cold, root, size_mib, args.runs, kubo)
        finally:
            for stop in stoppers:  # best effort; the folder goes anyway
                with contextlib.suppress(Exception):
                    stop()


if __name__ == "__main__":
    main()
