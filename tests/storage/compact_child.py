"""Child process of test_packs.py: GC compaction stopped at a chosen point, then SIGKILLed.

Usage: python compact_child.py REPO POINT

Stores 2,000 blocks of 1 KiB in small packs (64 KiB), pins every fourth, prints ``PIN <cid>``
for each, then runs a full GC. The store's own calls are wrapped (in this process only) so
that right after the first ``POINT`` returns, the child prints ``AT POINT`` and waits to be
killed: ``copy`` (a slice's copies appended and fsynced, their moves not yet committed),
``move`` (a slice's new places committed, the old pack not yet emptied), ``drop``
(the emptied pack marked gone in the index, its file not yet unlinked), ``unlink`` (its
file unlinked, the index not yet told at the next start).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import trio

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent)]  # tests/ for dag.py

from dag import raw_block  # noqa: E402

from ipfs_kit_node.logs import configure_logging  # noqa: E402
from ipfs_kit_node.storage import StoreConfig, TieredStore  # noqa: E402
from ipfs_kit_node.storage.blockdb import BlockDB  # noqa: E402
from ipfs_kit_node.storage.packs import PackFiles  # noqa: E402

CONFIG = StoreConfig(max_size=10**9, memory_size=0, parquet_export=False, pack_size=64 * 1024)
WRAPPED: dict[str, tuple[type, str]] = {"copy": (PackFiles, "append"),
                                        "move": (BlockDB, "move"),
                                        "drop": (BlockDB, "drop_pack"),
                                        "unlink": (PackFiles, "unlink")}


def stop_after(point: str) -> None:
    cls, name = WRAPPED[point]
    real = getattr(cls, name)

    def wrapper(self: Any, *args: Any, **kw: Any) -> Any:
        result = real(self, *args, **kw)
        if point == "copy" and not kw.get("durable"):
            return result  # a put's append, not compaction's
        print(f"AT {point}", flush=True)
        time.sleep(3600)  # on a worker thread: the parent kills us here
        return result

    setattr(cls, name, wrapper)


async def main(repo: Path, point: str) -> None:
    store = await TieredStore.open(repo, CONFIG)
    for _ in range(20):
        batch = [raw_block(size=1024) for _i in range(100)]
        await store.put_many(batch)
        for cid, _ in batch[::4]:
            await store.pin(cid, recursive=False)
            print(f"PIN {cid}", flush=True)
    stop_after(point)
    await store.gc(full=True)
    print("GC DONE", flush=True)  # the point was never reached: the parent fails
    time.sleep(3600)


if __name__ == "__main__":
    configure_logging(level="warning", fmt="json", stream=sys.stderr)
    trio.run(main, Path(sys.argv[1]), sys.argv[2])
