"""Child process of test_power_loss.py: writes through the store until SIGKILLed, recording
what it makes durable (powerloss_shim).

Usage: python powerloss_writer.py REPO SHADOW MODE REMOTE_DIR

- ``plain``: random raw blocks (1 B .. 300 KiB), every fifth pinned; GC never runs; snapshots
  every 0.3 s (each empties the journal).
- ``evict``: small blocks, each pinned, on a store far over its budget whose remote tier (a
  folder outside the repo) holds every block: GC keeps moving pinned blocks to the remote
  tier and deleting their local files.
- ``compact``: small blocks (in pack files of 64 KiB), every third pinned, a full GC every
  40 puts: the unpinned ones are collected and GC's compaction keeps copying the pinned ones
  out of mostly dead packs and unlinking those.
- ``gc-nosync``: one full GC of the repo as it is, with ``sync`` off, then the process exits
  without closing the store (a power cut right after compaction unlinked the emptied packs).

After each put or pin returns it prints ``PUT <cid>`` or ``PIN <cid>`` and flushes, so every
line the parent reads was acknowledged by the store.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import sys
from pathlib import Path

import trio

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # powerloss_shim, and tests/ for dag.py

import powerloss_shim  # noqa: E402
from dag import raw_block  # noqa: E402
from multiformats import CID  # noqa: E402

from ipfs_kit_node.errors import BlockNotFoundError  # noqa: E402
from ipfs_kit_node.logs import configure_logging  # noqa: E402
from ipfs_kit_node.storage import StoreConfig, TieredStore  # noqa: E402

PLAIN = StoreConfig(max_size=10**9, memory_size=10**6, snapshot_period=0.3,
                    parquet_export=False)
COMPACT = StoreConfig(max_size=10**9, memory_size=0, gc_period=3600, snapshot_period=0.5,
                      parquet_export=False, pack_size=64 * 1024)
EVICT = StoreConfig(max_size=200_000, memory_size=0, gc_watermark=0.5, gc_period=0.2,
                    snapshot_period=0.5, parquet_export=False)
CONFIGS = {"plain": PLAIN, "evict": EVICT, "compact": COMPACT}


class DirRemote:
    """A remote tier that is a folder (another system: its writes are not simulated)."""

    name = "dir"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def keep(self, cid: CID, data: bytes) -> None:
        (self.folder / str(cid)).write_bytes(data)

    async def is_safely_held(self, cid: CID) -> bool:
        return (self.folder / str(cid)).exists()

    async def fetch(self, cid: CID) -> bytes | None:
        try:
            return (self.folder / str(cid)).read_bytes()
        except FileNotFoundError:
            return None


def random_size(top: int) -> int:
    return max(1, min(top, int(2 ** random.uniform(0, math.log2(top)))))


async def gc_nosync(repo: Path) -> None:
    store = await TieredStore.open(repo, dataclasses.replace(COMPACT, sync=False))
    result = await store.gc(full=True)
    print(f"GC {result.moved} {result.packs_removed}", flush=True)


async def main(repo: Path, mode: str, remote_dir: Path) -> None:
    remote = DirRemote(remote_dir)
    store = await TieredStore.open(repo, CONFIGS[mode], remote=remote)
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        count = 0
        while True:
            size = random_size(300 * 1024) if mode == "plain" else random.randint(2_000, 20_000)
            if mode == "compact":
                size = random.randint(100, 8_000)
            cid, data = raw_block(size=size)
            if mode == "evict":
                remote.keep(cid, data)
            await store.put(cid, data)
            print(f"PUT {cid}", flush=True)
            count += 1
            if mode == "compact" and count % 40 == 0:
                await store.gc(full=True)
            if mode == "evict" or count % (3 if mode == "compact" else 5) == 0:
                try:
                    await store.pin(cid, recursive=False)
                except BlockNotFoundError:
                    continue  # GC took it between put and pin (it was not pinned yet)
                print(f"PIN {cid}", flush=True)


if __name__ == "__main__":
    # The store calls os.fsync & co. through the os module, so wrapping them now is enough.
    powerloss_shim.install(Path(sys.argv[1]), Path(sys.argv[2]))
    configure_logging(level="warning", fmt="json", stream=sys.stderr)
    if sys.argv[3] == "gc-nosync":
        trio.run(gc_nosync, Path(sys.argv[1]))
        os._exit(0)  # no close: what was not made durable is lost
    trio.run(main, Path(sys.argv[1]), sys.argv[3], Path(sys.argv[4]))
