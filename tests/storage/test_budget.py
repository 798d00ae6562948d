"""The byte budget under concurrent writes: an upload stores two batches at once, and each
must count the other's bytes (real files, a real store)."""

from __future__ import annotations

from pathlib import Path

import trio
from dag import raw_block

from ipfs_kit_node.storage import StoreConfig, TieredStore

BLOCK = 256 * 1024


async def test_concurrent_batches_over_the_budget_evict_for_each_other(tmp_path: Path) -> None:
    """Two batches that each fit once unpinned blocks go: both are stored, and the store
    stays within its budget. The round holds its blocks, as an upload does until it pins
    them: unheld, a batch that finished first is fair game for the other's GC (fresh blocks
    are colder than those read back the round before), and CI once saw exactly that.
    Each batch used to collect for itself alone while the other's bytes landed: one failed
    with "store full" (seen adding 64 MiB files in turn), or both passed
    their checks and the store ended over budget."""
    config = StoreConfig(max_size=24 * BLOCK, memory_size=0, gc_watermark=0.9,
                         pack_threshold=0)
    store = await TieredStore.open(tmp_path, config)
    try:
        for _ in range(20):  # 20 of 24 blocks' room taken, all unpinned
            await store.put(*raw_block(size=BLOCK))
        for round_ in range(5):
            batches = [[raw_block(size=BLOCK) for _ in range(8)] for _ in range(2)]
            errors: list[BaseException] = []

            async def put(batch: list[tuple[object, bytes]], errors: list[BaseException] = errors
                          ) -> None:
                try:
                    await store.put_many(batch)  # type: ignore[arg-type]
                except Exception as exc:
                    errors.append(exc)

            with store.hold():  # the tasks started inherit it
                async with trio.open_nursery() as nursery:
                    for batch in batches:
                        nursery.start_soon(put, batch)
                assert not errors, (round_, errors)
                used = store.stats().disk.bytes
                assert used <= config.max_size, (round_, used)
                for batch in batches:
                    for cid, data in batch:
                        assert await store.get(cid) == data
    finally:
        await store.close()
