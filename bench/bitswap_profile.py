"""Where our daemons' CPU goes in a 64 MiB Bitswap fetch: cProfile of both of our ends.

Runs one scenario (ours<-Kubo, Kubo<-ours or ours<-ours) with our daemon(s) under cProfile
(CPU time of the trio thread only: store threads are not in it), prints each daemon's CPU
seconds (from /proc, whole process) and the top functions by own time, and leaves the .prof
files in --out for `python -m pstats`. Kubo's CPU seconds (its whole driver process) are
printed too where it takes part.

    python bench/bitswap_profile.py [--case ours-kubo|kubo-ours|ours-ours|kubo-kubo] [--size-mib 64]
                                     [--no-profile] [--top 35] [--spy PY-SPY]

With --spy (a py-spy binary; implies --no-profile) each daemon is sampled during the fetch
instead, all threads, native frames off: collapsed stacks in --out, and the functions with
the most samples (own and total) printed per daemon.
"""

from __future__ import annotations

import argparse
import os
import pstats
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent / "tests"
sys.path[:] = [str(TESTS)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]
from helpers import LOOPBACK, Daemon, run_cli  # noqa: E402 - tests/ is not a package
from kubo.harness import KuboPeer  # noqa: E402

WRAPPER = """\
import cProfile, sys, time
out = sys.argv[1]
sys.argv = ["ipfs-kit-node", *sys.argv[2:]]
from ipfs_kit_node.cli import main
prof = cProfile.Profile(time.thread_time)  # CPU of the trio thread, not wall
prof.enable()
try:
    code = main()
finally:
    prof.disable()
    prof.dump_stats(out)
sys.exit(code)
"""


def cpu_of(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Profiled(Daemon):
    """A daemon run under cProfile, its stats written when it exits (SIGTERM)."""

    def __init__(self, root: Path, name: str, profile: bool) -> None:
        super().__init__(root, name=name)
        self.prof = root / f"{name}.prof"
        self.profile = profile

    def command(self, *extra: str, module: bool = False, listen: str = LOOPBACK,
                prefix: tuple[str, ...] = ()) -> list[str]:
        if not self.profile:
            return super().command(*extra, module=True, listen=listen, prefix=prefix)
        return [sys.executable, "-c", WRAPPER, str(self.prof), "--role", self.role,
                "--repo", str(self.repo), "--listen", listen, *extra]

    def cpu(self) -> float:
        assert self.proc is not None
        return cpu_of(self.proc.pid)

    def finish(self, top: int) -> None:
        self.stop(timeout=30)
        if self.profile and self.prof.exists():
            print(f"\n--- {self.repo.name}: top {top} by own time ({self.prof})")
            pstats.Stats(str(self.prof)).sort_stats("tottime").print_stats(top)


def spy_start(spy: str, d: Profiled, out: Path) -> subprocess.Popen[bytes]:
    assert d.proc is not None
    proc = subprocess.Popen([spy, "record", "--pid", str(d.proc.pid), "--rate", "250",
                             "--format", "raw", "--nonblocking", "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached before the fetch starts
    return proc


def spy_report(proc: subprocess.Popen[bytes], out: Path, name: str, top: int) -> None:
    proc.send_signal(signal.SIGINT)
    proc.wait(30)
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        frames = [f.split(" (")[0] + " " + f.rsplit("/", 1)[-1].rstrip(")")
                  for f in stack.split(";")[1:]]
        if not frames or "epoll" in frames[-1] or "wait " in frames[-1]:
            continue  # idle: the loop waiting, a thread parked
        samples += n
        own[frames[-1]] += n
        for f in set(frames):
            total[f] += n
    print(f"\n--- {name}: {samples} busy samples (own / total %, top {top})")
    for f, n in own.most_common(top):
        print(f"  own {100 * n / samples:5.1f}%  {f}")
    for f, n in total.most_common(top):
        print(f"  tot {100 * n / samples:5.1f}%  {f}")


def _tcp_addr(d: Daemon) -> str:
    return next(a for a in d.api("id")["Addresses"] if "/tcp/" in a)


def get(d: Daemon, cid: str, out: Path) -> float:
    started = time.perf_counter()
    done = run_cli("get", cid, "-o", str(out), "--repo", str(d.repo), timeout=300)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-500:])
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=("ours-kubo", "kubo-ours", "ours-ours", "kubo-kubo"),
                        default="ours-kubo")
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--top", type=int, default=35)
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--spy", default=None)
    args = parser.parse_args()
    if args.spy:
        args.no_profile = True
    size = args.size_mib * 2**20
    with tempfile.TemporaryDirectory(prefix="ikn-prof-", dir="/tmp") as d:
        tmp = args.out or Path(d)
        tmp.mkdir(parents=True, exist_ok=True)
        f = tmp / "in"
        f.write_bytes(os.urandom(size))
        out = tmp / "out"
        env = {"IPFS_KIT_STORAGE_MEMORY_SIZE": "16MiB"}
        if args.case == "kubo-kubo":  # the reference: both Kubo's CPU, no daemon of ours
            a = KuboPeer(tmp / "kubo-a").start()
            b = KuboPeer(tmp / "kubo-b").start()
            try:
                cid = a.add_file(f)
                b.connect(a.tcp_addr)
                assert a.proc is not None and b.proc is not None
                was = cpu_of(a.proc.pid), cpu_of(b.proc.pid)
                started = time.perf_counter()
                b.download(cid, out, timeout=300)
                seconds = time.perf_counter() - started
                print(f"kubo-kubo: {size / seconds / 1e6:.1f} MB/s ({seconds:.2f} s); CPU "
                      f"seeder {cpu_of(a.proc.pid) - was[0]:.2f} s, "
                      f"fetcher {cpu_of(b.proc.pid) - was[1]:.2f} s")
            finally:
                a.stop()
                b.stop()
            return
        try:
            measure(args, tmp, f, out, size, env)
        except BaseException:
            for d in LIVE:  # a failed fetch must not leave our daemons running
                d.kill()
            raise


LIVE: list[Profiled] = []  # daemons started by measure(), killed if it fails


def measure(args: argparse.Namespace, tmp: Path, f: Path, out: Path, size: int,
            env: dict[str, str]) -> None:
    """One of our cases, its CPU figures printed (see main)."""
    if args.case == "ours-ours":
        ends = [Profiled(tmp, "seeder", not args.no_profile).start(),
                Profiled(tmp, "fetcher", not args.no_profile).start(env=env)]
        LIVE.extend(ends)
        cid = ends[0].cli("add", "-Q", "--cid-version", "0", str(f)).stdout.strip()
        ends[1].cli("swarm", "connect", ends[0].addr)
        before = [e.cpu() for e in ends]
        spies = [spy_start(args.spy, e, tmp / f"{e.repo.name}.spy") for e in ends] \
            if args.spy else []
        seconds = get(ends[1], cid, out)
    else:
        ours = Profiled(tmp, "ours", not args.no_profile).start(env=env)
        ends = [ours]
        LIVE.append(ours)
        k = KuboPeer(tmp / "kubo").start()
        try:
            k.connect(_tcp_addr(ours))
            if args.case == "kubo-ours":
                cid = ours.cli("add", "-Q", "--cid-version", "0", str(f)).stdout.strip()
            else:
                cid = k.add_file(f)
            assert k.proc is not None
            kubo_before = cpu_of(k.proc.pid)
            before = [ours.cpu()]
            spies = [spy_start(args.spy, ours, tmp / "ours.spy")] if args.spy else []
            if args.case == "kubo-ours":
                started = time.perf_counter()
                k.download(cid, out, timeout=300)
                seconds = time.perf_counter() - started
            else:
                seconds = get(ours, cid, out)
            kubo_used = cpu_of(k.proc.pid) - kubo_before
        finally:
            k.stop()
    used = [e.cpu() - b for e, b in zip(ends, before, strict=True)]
    kubo = f", kubo {kubo_used:.2f} s" if args.case != "ours-ours" else ""
    print(f"{args.case}: {size / seconds / 1e6:.1f} MB/s ({seconds:.2f} s); CPU "
          + ", ".join(f"{e.repo.name} {u:.2f} s" for e, u in zip(ends, used, strict=True))
          + kubo)
    for e, spy in zip(ends, spies, strict=False):
        spy_report(spy, tmp / f"{e.repo.name}.spy", e.repo.name, args.top)
    for e in ends:
        e.finish(args.top)


if __name__ == "__main__":
    main()
