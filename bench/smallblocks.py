"""Small blocks through a daemon: one file per block against pack files, same run.

    python bench/smallblocks.py [--files 10000] [--size 1024] [--runs 3] [--reference DIR]

Each run starts a fresh daemon (``[storage] sync`` on, the default) with the layout of pack
files (``pack_threshold`` 64 KiB, the default) and one with one file per block
(``pack_threshold=0``), taking turns to go first, and times on each: ``add -r`` of a folder
of ``--files`` files of ``--size`` bytes, ``get`` of it back (memory tier off: every block
read from disk), then ``pin rm`` and ``repo gc --full`` of it. ``--reference DIR``: the other
layout is instead the code in DIR (e.g. an export of main), run with PYTHONPATH=DIR.
Prints min/median/max seconds and the ratio of the medians (one file a block / packs).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:] = [str(HERE.parent / "tests")] + [p for p in sys.path
                                              if Path(p or ".").resolve() != HERE]
from helpers import BIN, Daemon  # noqa: E402 - tests/ is not a package

STEPS = ("add", "get", "gc")


def timed(*cmd: str) -> float:
    t = time.perf_counter()
    out = subprocess.run([str(BIN), *cmd], capture_output=True, text=True, timeout=3600)
    took = time.perf_counter() - t
    if out.returncode:
        raise RuntimeError(f"{' '.join(cmd)}: {out.stderr[-2000:]}")
    return took


def one(root: Path, name: str, folder: Path, env: dict[str, str], code: str | None
        ) -> dict[str, float]:
    saved = os.environ.get("PYTHONPATH")
    if code is not None:
        os.environ["PYTHONPATH"] = code
    try:
        d = Daemon(root, name=name).start(env={"IPFS_KIT_STORAGE_MEMORY_SIZE": "0", **env},
                                          timeout=60)
    finally:
        if code is not None:
            if saved is None:
                del os.environ["PYTHONPATH"]
            else:
                os.environ["PYTHONPATH"] = saved
    try:
        repo = ["--repo", str(d.repo)]
        t = time.perf_counter()
        out = subprocess.run([str(BIN), "add", "-r", "-Q", str(folder), *repo],
                             capture_output=True, text=True, timeout=3600)
        add = time.perf_counter() - t
        assert out.returncode == 0, out.stderr
        cid = out.stdout.strip()
        target = root / f"{name}-got"
        got = timed("get", cid, "-o", str(target), *repo)
        shutil.rmtree(target)
        timed("pin", "rm", cid, *repo)
        gc = timed("repo", "gc", "--full", *repo)
        return {"add": add, "get": got, "gc": gc}
    finally:
        d.stop()
        shutil.rmtree(d.repo, ignore_errors=True)


def spread(values: list[float]) -> str:
    return (f"{min(values):.2f}/{statistics.median(values):.2f}/{max(values):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--reference", type=Path,
                        help="code of the one-file layout (else pack_threshold=0 here)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-small-"))
    try:
        folder = root / "data"
        folder.mkdir()
        for i in range(args.files):
            (folder / f"{i:05d}").write_bytes(os.urandom(args.size))
        layouts: dict[str, tuple[dict[str, str], str | None]] = {
            "packs": ({}, None),
            "files": ({} if args.reference else {"IPFS_KIT_STORAGE_PACK_THRESHOLD": "0"},
                      str(args.reference) if args.reference else None),
        }
        results: dict[str, list[dict[str, float]]] = {name: [] for name in layouts}
        for run in range(args.runs):
            order = list(layouts) if run % 2 == 0 else list(reversed(layouts))
            for name in order:
                env, code = layouts[name]
                results[name].append(one(root, f"{name}{run}", folder, env, code))
                print(f"run {run} {name}: " + ", ".join(
                    f"{k} {v:.2f} s" for k, v in results[name][-1].items()), flush=True)
        print(f"{args.files:,} files of {args.size} B, {args.runs} runs, seconds "
              "min/median/max:")
        for step in STEPS:
            med = {n: statistics.median(r[step] for r in results[n]) for n in layouts}
            print(f"  {step:4} packs {spread([r[step] for r in results['packs']])}  one file a "
                  f"block {spread([r[step] for r in results['files']])}  ratio "
                  f"{med['files'] / med['packs']:.2f}x")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
