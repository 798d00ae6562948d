"""What a Kubo fetcher does between its want batches, fetching 64 MiB from Kubo or from ours.

The Go Kubo v0.22 core fetching (tests/kubo/harness.py) runs under ``strace -f`` (socket and
file reads and writes, fsyncs; seccomp-filtered, so other calls run at full speed), its seeder
alternating between a second Kubo core and our daemon, ``--rounds`` times each. Kubo's DAG
reader asks for a file's leaves 10 at a time (a write of ~500 bytes: one want message); per
batch this prints, min/median/max over all batches of all rounds:

- want -> first data: the seeder's answer latency (first socket read of >= 4 KiB after it);
- want -> last data: until the batch's last bytes had arrived (the last such read before the
  next want);
- last data -> next want: what Kubo took after that before asking for more (its own work:
  hashing, storing each block in flatfs with its fsyncs, handing it to the reader);
- cycle: want to next want;

and the fetcher's socket reads, socket writes and fsyncs per 64 MiB. Wall times are inflated
by strace; the comparison between the two seeders in the same run is the point.

    python bench/bitswap_kubo_wire.py [--rounds 2] [--size-mib 64] [--keep DIR]
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent / "tests"
sys.path[:] = [str(TESTS)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]
from helpers import Daemon  # noqa: E402 - tests/ is not a package
from kubo import harness  # noqa: E402
from kubo.harness import KuboPeer  # noqa: E402

WANT_BYTES = 400  # a Noise-sealed want message of 10 CIDv0 entries is ~495 bytes
DATA_BYTES = 4096  # socket reads this large carry block data
LINE = re.compile(r"(\d+) +(\d+):(\d+):([\d.]+) (.*)")
CALL = re.compile(r"(\w+)\((\d+)<([^>]*)>.*= (-?\d+)")
RESUMED = re.compile(r"<\.\.\. (\w+) resumed>(.*)")

Event = tuple[float, str, str, int]  # time, call, "socket" | "file" | "other", result


class StracedKubo(KuboPeer):
    """A Kubo core whose driver process runs under strace."""

    def __init__(self, workdir: Path, trace: Path) -> None:
        super().__init__(workdir)
        self.trace = trace

    def start(self, timeout: float = 60.0) -> KuboPeer:
        real = subprocess.Popen
        trace = self.trace

        def popen(args: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
            return real(["strace", "-f", "--seccomp-bpf", "-tt", "-y", "-s", "0",
                         "-e", "trace=read,write,fsync", "-o", str(trace), *args],
                        **kwargs)  # type: ignore[call-overload]

        harness.subprocess.Popen = popen  # type: ignore[assignment]
        try:
            return super().start(timeout)
        finally:
            harness.subprocess.Popen = real  # type: ignore[misc]


def parse(path: Path) -> list[Event]:
    """The trace's completed calls, an unfinished one joined to its resumption."""
    pending: dict[str, str] = {}
    events: list[Event] = []
    for line in path.read_text(errors="replace").splitlines():
        m = LINE.match(line)
        if m is None:
            continue
        pid, hours, minutes, seconds, rest = m.groups()
        t = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
        if rest.endswith("<unfinished ...>"):
            pending[pid] = rest.removesuffix("<unfinished ...>")
            continue
        if (r := RESUMED.match(rest)) is not None:
            rest = pending.pop(pid, "") + r.group(2)
        c = CALL.match(rest)
        if c is None:
            continue
        call, _, what, result = c.groups()
        kind = ("socket" if what.startswith(("socket", "TCP")) else
                "file" if what.startswith("/") else "other")
        events.append((t, call, kind, int(result)))
    events.sort()
    return events


def batches(events: list[Event]) -> dict[str, list[float]]:
    """Per want batch (ms): latency, arrival of all its data, Kubo's time after, cycle."""
    wants = [e[0] for e in events if e[1:3] == ("write", "socket") and e[3] >= WANT_BYTES]
    data = [e[0] for e in events if e[1:3] == ("read", "socket") and e[3] >= DATA_BYTES]
    out: dict[str, list[float]] = {"want -> first data": [], "want -> last data": [],
                                   "last data -> next want": [], "cycle": []}
    for sent, following in itertools.pairwise(wants):
        arrived = [t for t in data if sent < t < following]
        if not arrived:
            continue
        out["want -> first data"].append((arrived[0] - sent) * 1000)
        out["want -> last data"].append((arrived[-1] - sent) * 1000)
        out["last data -> next want"].append((following - arrived[-1]) * 1000)
        out["cycle"].append((following - sent) * 1000)
    return out


def counts(events: list[Event]) -> dict[str, int]:
    return {"socket reads": sum(e[1:3] == ("read", "socket") for e in events),
            "socket writes": sum(e[1:3] == ("write", "socket") for e in events),
            "fsyncs": sum(e[1] == "fsync" for e in events)}


@contextmanager
def seeder(kind: str, tmp: Path, src: Path) -> Iterator[tuple[str, str]]:
    """(address, CID) of a fresh seeder holding ``src``: a Kubo core or our daemon."""
    if kind == "Kubo":
        k = KuboPeer(tmp / "seeder-kubo").start()
        try:
            yield k.tcp_addr, k.add_file(src)
        finally:
            k.stop()
        return
    ours = Daemon(tmp, name="seeder-ours").start(env={"IPFS_KIT_STORAGE_MEMORY_SIZE": "16MiB"})
    try:
        cid = ours.cli("add", "-Q", "--cid-version", "0", str(src)).stdout.strip()
        yield next(a for a in ours.api("id")["Addresses"] if "/tcp/" in a), cid
    finally:
        ours.kill()


def one(kind: str, tmp: Path, size: int, trace: Path) -> float:
    src = tmp / "src"
    src.write_bytes(os.urandom(size))
    fetcher = StracedKubo(tmp / "fetcher", trace).start()
    try:
        with seeder(kind, tmp, src) as (addr, cid):
            fetcher.connect(addr)
            time.sleep(0.5)  # identify done before the clock starts
            started = time.perf_counter()
            fetcher.download(cid, tmp / "out", timeout=300)
            return time.perf_counter() - started
    finally:
        fetcher.stop()


def spread(values: list[float]) -> str:
    return f"{min(values):7.1f} {statistics.median(values):7.1f} {max(values):7.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--keep", type=Path, default=None, help="keep the traces here")
    args = parser.parse_args()
    if shutil.which("strace") is None:
        print("strace is not installed: nothing measured")
        return
    size = args.size_mib * 2**20
    per: dict[str, dict[str, list[float]]] = {}
    totals: dict[str, dict[str, list[int]]] = {}
    for rnd in range(args.rounds):
        for kind in ("Kubo", "ours"):
            with tempfile.TemporaryDirectory(prefix="ikn-wire-", dir="/tmp") as d:
                tmp = Path(d)
                trace = tmp / "fetcher.strace"
                seconds = one(kind, tmp, size, trace)
                events = parse(trace)
                if args.keep is not None:
                    args.keep.mkdir(parents=True, exist_ok=True)
                    shutil.copy(trace, args.keep / f"kubo-from-{kind}-{rnd}.strace")
            print(f"round {rnd + 1}: Kubo<-{kind} {size / seconds / 1e6:.1f} MB/s under strace",
                  flush=True)
            for name, values in batches(events).items():
                per.setdefault(kind, {}).setdefault(name, []).extend(values)
            for name, n in counts(events).items():
                totals.setdefault(kind, {}).setdefault(name, []).append(n)
    print(f"\nKubo fetching {args.size_mib} MiB, per 10-block want batch (ms; min median max "
          f"over {args.rounds} rounds):")
    print(f"{'':24} {'from Kubo':>23}   {'from ours':>23}")
    for name in per["Kubo"]:
        print(f"{name:24} {spread(per['Kubo'][name])}   {spread(per['ours'][name])}")
    print("the fetcher's calls per fetch (median):")
    for name in totals["Kubo"]:
        print(f"{name:24} {statistics.median(totals['Kubo'][name]):23.0f}   "
              f"{statistics.median(totals['ours'][name]):23.0f}")


if __name__ == "__main__":
    main()
