"""Pack files' disk space, on real files (ext4 here): dead bytes a hole already freed are
neither counted as reclaimable nor start a compaction; small records deleted all over the
packs (which holes cannot free) are compacted once they hold a quarter of the budget; a block
deleted between compaction's copy and its commit leaves no copy holding space, nor does a
crash at that point; and ``repo stat`` says which dead bytes still take disk."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import trio
from blockfiles import assert_matches_index, blocks_on_disk, child_stopped_at, pack_files
from dag import raw_block

from ipfs_kit_node.storage import StoreConfig, TieredStore
from ipfs_kit_node.storage import gc as gc_module
from ipfs_kit_node.storage.blocks import key_of
from ipfs_kit_node.storage.packs import PACKS_DIR, PackFiles, record_overhead

CONFIG = StoreConfig(max_size=10**9, memory_size=0, parquet_export=False)
SMALL_PACKS = dataclasses.replace(CONFIG, pack_size=64 * 1024)
CHILD = Path(__file__).with_name("compact_child.py")
KiB = 1024


def allocated(root: Path) -> int:
    return sum(os.stat(p).st_blocks * 512 for p in pack_files(root))


def disk_stats(store: TieredStore) -> dict[str, int]:
    stats: dict[str, int] = store.stats().as_dict()["disk"]
    return stats


async def first_pack_two_in_three_deleted(store: TieredStore) -> tuple[Any, list[Any]]:
    """80 blocks of 1,000 bytes put; two in three of the first pack's deleted (under half
    live, and their holes free nothing: each record is under a filesystem block). Returns
    that pack's first row and the blocks it still holds."""
    blocks = [raw_block(size=1000) for _ in range(80)]
    for cid, data in blocks:
        await store.put(cid, data)
    first = store._db.get(key_of(blocks[0][0]))
    assert first is not None and first.pack is not None
    in_first = [b for b in blocks if (m := store._db.get(key_of(b[0]))) is not None
                and m.pack == first.pack]
    for i, (cid, _) in enumerate(in_first):
        if i % 3:
            assert await store.delete(cid)
    return first, in_first[::3]


async def test_punched_dead_bytes_are_neither_reclaimable_nor_start_a_compaction(
        tmp_path: Path) -> None:
    """256 KiB blocks (add's chunks) deleted by puts over budget are punched out at once:
    the stats count them as freed, not as dead bytes compaction would reclaim, and no
    compaction starts for them (one started after every put over budget, to do nothing)."""
    config = dataclasses.replace(CONFIG, max_size=2 * 1024 * KiB)
    store = await TieredStore.open(tmp_path, config)
    passes = 0
    real = store._compact

    async def counted(result: gc_module.GcResult) -> None:
        nonlocal passes
        passes += 1
        await real(result)

    store._compact = counted  # type: ignore[method-assign]
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        blocks = [raw_block(size=256 * KiB) for _ in range(24)]
        for cid, data in blocks:  # from the 9th on, each put collects the coldest block
            await store.put(cid, data)
        await trio.sleep(0.2)  # (a compaction started in the background would be counted)
        stats = disk_stats(store)
        assert len(store) <= 8 and stats["bytes"] <= config.max_size
        dead = stats["pack_bytes"] - len(store) * (256 * KiB + record_overhead(b"k" * 34))
        assert dead >= 16 * 256 * KiB, stats  # 16 records dead...
        assert stats["pack_freed_bytes"] >= 15 * 256 * KiB, stats  # ...and freed by holes
        assert stats["pack_dead_bytes"] <= 16 * 8 * KiB, stats  # their partial fs blocks
        assert stats["pack_dead_bytes"] + stats["pack_freed_bytes"] == dead
        assert allocated(tmp_path) <= (len(store) * 256 + 16 * 8 + 4) * KiB
        assert passes == 0, f"{passes} compaction passes for dead bytes already freed"
        nursery.cancel_scope.cancel()


async def test_small_blocks_deleted_all_over_the_packs_are_compacted_under_pressure(
        tmp_path: Path) -> None:
    """1,000-byte blocks deleted one in three (as GC's coldest-first picks land all over the
    packs): each hole frees nothing (a record is under one filesystem block) and every pack
    stays two thirds live, over the half-live mark GC compacts at. Their dead bytes, past a
    quarter of max_size, are compacted anyway, and the stats say so before and after."""
    config = dataclasses.replace(SMALL_PACKS, max_size=300_000)
    store = await TieredStore.open(tmp_path, config)
    try:
        blocks = [raw_block(size=1000) for _ in range(300)]
        for cid, data in blocks:  # one append each: packs roll every 64 KiB
            await store.put(cid, data)
        kept = [b for i, b in enumerate(blocks) if i % 3]
        for cid, _ in blocks[::3]:
            assert await store.delete(cid)
        packs = store._db.packs()
        assert len(packs) >= 4 and all(live > end * gc_module.COMPACT_LIVE
                                       for end, live in packs.values()), packs
        before = disk_stats(store)
        assert before["pack_dead_bytes"] >= 100 * 1000, before  # held, not freed
        assert before["pack_freed_bytes"] < 8 * KiB, before
        assert before["pack_dead_bytes"] > config.max_size * gc_module.COMPACT_PRESSURE
        on_disk = allocated(tmp_path)
        result = await store.gc()  # nothing to collect (under the watermark): compaction
        assert result.removed == 0 and result.moved > 0 and result.packs_removed, result
        after = disk_stats(store)
        assert after["pack_dead_bytes"] <= config.max_size * gc_module.COMPACT_PRESSURE / 2, \
            after
        assert allocated(tmp_path) <= on_disk - 40_000, (on_disk, allocated(tmp_path))
        for cid, data in kept:
            assert await store.get(cid) == data
        assert (await store.verify()).ok
        assert_matches_index(tmp_path, {bytes(c.digest) async for c in store})
    finally:
        await store.close()


async def test_a_block_deleted_between_compactions_copy_and_commit_leaves_no_copy(
        tmp_path: Path) -> None:
    """A delete (not under the GC lock) that lands after compaction copied a block and
    before the copy's move is committed: the move misses, and the copy, which no row names,
    is punched out (it held its space until the pack it went to was compacted). The delete
    is made to land there by a patched append (compaction's, the durable one) that runs it
    on the event loop once the copy is written."""
    store = await TieredStore.open(tmp_path, SMALL_PACKS)
    try:
        blocks = [raw_block(size=1000) for _ in range(80)]
        for cid, data in blocks:  # one append each: the first pack rolls past 64 KiB
            await store.put(cid, data)
        first = store._db.get(key_of(blocks[0][0]))
        assert first is not None and first.pack is not None
        in_first = [b for b in blocks if (m := store._db.get(key_of(b[0]))) is not None
                    and m.pack == first.pack]
        victim, *others = in_first
        survivor = others.pop()
        for cid, _ in others:  # (holes of 1 KiB free nothing): compacted, two blocks left
            assert await store.delete(cid)
        real_append = store._packs.append
        copied: list[tuple[int, list[int]]] = []

        deleted = trio.Event()

        async def delete_victim() -> None:
            assert await store.delete(victim[0])
            deleted.set()

        def append_then_delete_victim(items: Any, *, durable: bool = False
                                      ) -> tuple[int, list[int]]:
            placed = real_append(items, durable=durable)
            if durable and not copied:  # compaction's copy: the delete lands now
                copied.append(placed)
                trio.from_thread.run_sync(nursery.start_soon, delete_victim)  # its own task
                trio.from_thread.run(deleted.wait)
            return placed

        store._packs.append = append_then_delete_victim  # type: ignore[method-assign]
        result = gc_module.GcResult()
        async with trio.open_nursery() as nursery:
            await store._compact(result)
        store._packs.append = real_append  # type: ignore[method-assign]
        assert copied and result.moved == 1 and result.packs_removed == 1, result
        assert not store.is_local(victim[0])
        assert key_of(victim[0]) not in blocks_on_disk(tmp_path), "the dead copy is whole"
        new, offs = copied[0]
        assert store._packs.read(new, offs[0], 1000) == bytes(1000)  # punched out
        assert await store.get(survivor[0]) == survivor[1]
        assert (await store.verify()).ok
        assert_matches_index(tmp_path, {bytes(c.digest) async for c in store})
    finally:
        await store.close()


async def test_a_pack_left_half_compacted_holds_no_moved_records(tmp_path: Path) -> None:
    """A compaction that leaves a pack for the next GC (one of its blocks being written or
    removed; an error or a crash do the same) has punched out the records it moved, and the
    dead ones between them: they held their space until that pack was compacted again. A
    claim in ``_inflight`` stands for the block being removed."""
    store = await TieredStore.open(tmp_path, SMALL_PACKS)
    try:
        first, kept = await first_pack_two_in_three_deleted(store)
        busy = key_of(kept[len(kept) // 2][0])
        before = os.stat(store._packs.path(first.pack)).st_blocks * 512
        store._inflight[busy] = trio.Event()
        result = gc_module.GcResult()
        await store._compact(result)
        store._inflight.pop(busy).set()
        assert result.moved == len(kept) - 1 and not result.packs_removed, result
        assert store._packs.size(first.pack), "left for the next GC"
        rows = {(m.pack, m.off) for _, m in store._db.page(b"", local=True, limit=10_000)}
        assert set(valid_records(tmp_path)) == rows, "moved records left whole"
        after = os.stat(store._packs.path(first.pack)).st_blocks * 512
        assert after <= 4 * 4096 < before, (before, after)  # the busy record, edges
        for cid, data in kept:
            assert await store.get(cid) == data
        result = await store.gc()  # one record live, its dead bytes freed: copied, the pack goes
        assert (result.moved, result.packs_removed) == (1, 1), result
        assert disk_stats(store)["pack_dead_bytes"] < 4 * 4096
        assert (await store.verify()).ok
        assert_matches_index(tmp_path, {bytes(c.digest) async for c in store})
    finally:
        await store.close()


async def test_a_move_commit_refused_by_a_full_disk_leaves_no_copy(tmp_path: Path) -> None:
    """Compaction's copies are written, then the index cannot commit their moves (a full
    disk: SQLITE_FULL leaves the transaction undone): the copies, which no row names, are
    punched out (they held space on the disk that was full), and the blocks read where they
    were. (sqlite's error is a stand-in: raised by a patched move.)"""
    import sqlite3

    store = await TieredStore.open(tmp_path, SMALL_PACKS)
    try:
        _, kept = await first_pack_two_in_three_deleted(store)
        real_move = store._db.move

        def full(moves: Any) -> int:
            raise sqlite3.OperationalError("database or disk is full")

        store._db.move = full  # type: ignore[method-assign]
        result = gc_module.GcResult()
        await store._compact(result)
        store._db.move = real_move  # type: ignore[method-assign]
        assert result.errors and "is full" in result.errors[0] and not result.moved, result
        rows = {(m.pack, m.off) for _, m in store._db.page(b"", local=True, limit=10_000)}
        assert set(valid_records(tmp_path)) == rows, "copies no row names left whole"
        for cid, data in kept:
            assert await store.get(cid) == data
        result = await store.gc()  # the disk has room again: compacted
        assert result.moved == len(kept) and result.packs_removed, result
        assert (await store.verify()).ok
        assert_matches_index(tmp_path, {bytes(c.digest) async for c in store})
    finally:
        await store.close()


def valid_records(root: Path) -> list[tuple[int, int]]:
    """(pack, offset) of every whole, valid record in the packs (punched ones read zeros)."""
    files = PackFiles(root / "blocks" / PACKS_DIR, sync=False)
    try:
        return [(pack, r.off) for pack in files.ids()
                for r in files.scan(pack, resync=True)[0]]
    finally:
        files.close()


async def test_kill_9_between_compactions_copy_and_commit_leaves_no_copy(
        tmp_path: Path) -> None:
    """A process killed after compaction's copies are written (fsynced) and before their
    moves are committed (compact_child.py, point ``copy``): the next start finds them past
    the pack's committed end, their blocks indexed where they were, and punches them out
    (they stayed as dead bytes until that pack was compacted). Every block still reads."""
    repo = tmp_path / "repo"

    pins = await trio.to_thread.run_sync(child_stopped_at, CHILD, repo, "copy",
                                         tmp_path / "child.log")
    store = await TieredStore.open(repo, SMALL_PACKS)
    try:
        rows = {(m.pack, m.off) for _, m in store._db.page(b"", local=True, limit=10_000)}
        assert len(rows) == 500
        assert set(valid_records(repo)) == rows, "records on disk that no row names"
        for text in pins:
            assert len(await store.get(text)) == 1024
        assert (await store.verify()).ok
        assert_matches_index(repo, {bytes(c.digest) async for c in store})
    finally:
        await store.close()


def test_repo_stat_tells_dead_bytes_on_disk_from_freed_ones(daemon: Any,
                                                              short_tmp: Path) -> None:
    """``repo stat``: 256 KiB blocks removed are dead bytes already freed by holes, not
    bytes compaction would reclaim."""
    d = daemon().start()
    cids = []
    for i in range(4):
        f = short_tmp / f"b{i}"
        f.write_bytes(os.urandom(256 * KiB))
        out = d.cli("block", "put", str(f))
        assert out.returncode == 0, out.stderr
        cids.append(out.stdout.strip())
    for cid in cids[:3]:
        assert d.cli("block", "rm", cid).returncode == 0
    disk = json.loads(d.cli("repo", "stat", "--enc", "json").stdout)["Tiers"]["disk"]
    assert disk["pack_freed_bytes"] >= 3 * 248 * KiB, disk
    assert disk["pack_dead_bytes"] <= 3 * 8 * KiB, disk
    text = d.cli("repo", "stat").stdout
    line = next(x for x in text.splitlines() if x.startswith("packs:"))
    assert f"{disk['pack_dead_bytes']:,} dead still on disk" in line, line
    assert f"{disk['pack_freed_bytes']:,} dead already freed" in line, line


async def test_packs_left_mostly_holes_are_compacted_away(tmp_path: Path) -> None:
    """Packs whose dead records were punched out take no disk for them, but each stayed a
    file for as long as one of its blocks lived: churn left a new mostly-holes pack file
    every minute. Under an eighth live, a GC copies the few records out and the files go;
    every block reads back, and the files left are bounded by the live bytes."""
    store = await TieredStore.open(tmp_path, dataclasses.replace(CONFIG, pack_size=1024 * KiB))
    try:
        blocks = [raw_block(size=64 * KiB) for _ in range(128)]  # 8 packs of 16 records
        for cid, data in blocks:
            await store.put(cid, data)
        by_pack: dict[int, list[tuple[Any, bytes]]] = {}
        for cid, data in blocks:
            meta = store._db.get(key_of(cid))
            assert meta is not None and meta.pack is not None
            by_pack.setdefault(meta.pack, []).append((cid, data))
        kept = [records[0] for records in by_pack.values()]
        for records in by_pack.values():
            for cid, _ in records[1:]:  # 15 in 16 deleted: each one's hole frees most of it
                assert await store.delete(cid)
        before = len(pack_files(tmp_path))
        # holes freed over three quarters of each pack's dead bytes: the older rules left it
        dead_per_pack = 15 * (64 * KiB + record_overhead(key_of(kept[0][0])))
        assert before >= 7
        held = disk_stats(store)["pack_dead_bytes"]
        assert held < before * dead_per_pack * gc_module.COMPACT_HELD, held
        result = await store.gc()
        assert result.moved >= len(kept) - 2 and result.packs_removed >= before - 2, result
        assert len(pack_files(tmp_path)) <= 2, "mostly-holes packs stayed"
        for cid, data in kept:
            assert await store.get(cid) == data
        assert (await store.verify()).ok
        assert_matches_index(tmp_path, {bytes(c.digest) async for c in store})
    finally:
        await store.close()
