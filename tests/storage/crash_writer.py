"""Child process for test_crash.py: puts (and sometimes pins) random blocks until killed.

Usage: python crash_writer.py REPO. After each put or pin returns it prints ``PUT <cid>`` or
``PIN <cid>`` and flushes, so every line the parent reads was acknowledged by the store. It never
closes the store: the parent ends it with SIGKILL.
"""

from __future__ import annotations

import math
import random
import sys
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/, for dag.py

from dag import raw_block

from ipfs_kit_node.logs import configure_logging
from ipfs_kit_node.storage import StoreConfig, TieredStore

MAX_SIZE = 300 * 1024


def random_size() -> int:
    """1 B .. 300 KiB, log-uniform so tiny and large blocks both turn up often."""
    return max(1, min(MAX_SIZE, int(2 ** random.uniform(0, math.log2(MAX_SIZE)))))


async def main(repo: Path) -> None:
    store = await TieredStore.open(repo, StoreConfig(max_size=10**9, memory_size=10**6))
    count = 0
    while True:
        cid, data = raw_block(size=random_size())
        await store.put(cid, data)
        print(f"PUT {cid}", flush=True)
        count += 1
        if count % 5 == 0:
            await store.pin(cid, recursive=False)
            print(f"PIN {cid}", flush=True)


if __name__ == "__main__":
    configure_logging(level="warning", fmt="json", stream=sys.stderr)
    trio.run(main, Path(sys.argv[1]))
