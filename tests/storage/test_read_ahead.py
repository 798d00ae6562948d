"""Reads started ahead (TieredStore.read_soon) and the one-lookup read (get_held), on real
files: a file walk through the store reads the same bytes as before, a corrupt block met by
a read started ahead is quarantined and reported missing, and the reads under way are
bounded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from blockfiles import damage_block
from dag import dagpb_block, raw_block
from multiformats import CID

from ipfs_kit_node.dagwalk import (
    READ_AHEAD,
    READ_AHEAD_TOTAL,
    file_bytes,
    file_nodes,
    resolve_path,
)
from ipfs_kit_node.storage import BlockNotFoundError, StoreConfig, TieredStore
from ipfs_kit_node.storage.disk import DiskTier
from ipfs_kit_node.storage.store import PendingRead
from ipfs_kit_node.unixfs import data as fs
from ipfs_kit_node.unixfs.importer import Added, import_path
from ipfs_kit_node.unixfs.params import Block, ImportParams

DISK_ONLY = StoreConfig(max_size=10**8, memory_size=0)  # every read goes to disk


async def add_file(store: TieredStore, path: Path) -> CID:
    """A two-level file (8 KiB chunks, 16 per node): several frames, each over READ_AHEAD."""
    root = None
    params = ImportParams(cid_version=1, raw_leaves=True, chunk_size=8192, max_links=16)
    for item in import_path(path, params):
        if isinstance(item, Block):
            await store.put(item.cid, item.data)
        elif isinstance(item, Added):
            root = item.entry.cid
    assert root is not None
    return root


async def test_get_held_and_read_soon(tmp_path: Path) -> None:
    store = await TieredStore.open(tmp_path, DISK_ONLY)
    cid, data = raw_block(size=5000)
    absent, _ = raw_block(size=5001)
    await store.put(cid, data)
    assert await store.get_held(cid) == data
    assert await store.get_held(absent) is None
    assert store.is_held(cid) and not store.is_held(absent)
    assert store.read_soon(absent) is None
    pending = store.read_soon(cid)
    assert pending is not None and await pending.result() == data
    await store.close()


async def test_disk_reads_under_way_are_bounded(tmp_path: Path) -> None:
    store = await TieredStore.open(tmp_path, DISK_ONLY)
    blocks = [raw_block(size=3000 + i) for i in range(12)]
    for cid, data in blocks:
        await store.put(cid, data)
    # No checkpoint between the calls: no read can finish, so the ninth finds none free.
    started = [store.read_soon(cid) for cid, _ in blocks]
    assert sum(p is not None for p in started) == 8
    for pending, (_, data) in zip(started, blocks, strict=True):
        if pending is not None:
            assert await pending.result() == data
    assert all(store.read_soon(cid) is not None for cid, _ in blocks[:8])  # all free again
    await store.close()


@pytest.mark.parametrize("memory", [0, 10**8])
async def test_file_walk_reads_ahead_through_the_store(tmp_path: Path, memory: int) -> None:
    content = os.urandom(8192 * 100 + 123)
    (tmp_path / "f.bin").write_bytes(content)
    store = await TieredStore.open(tmp_path / "repo", StoreConfig(max_size=10**8,
                                                                  memory_size=memory))
    root = await add_file(store, tmp_path / "f.bin")
    node = (await resolve_path(store, root, [])).node
    assert node is not None and READ_AHEAD < 16
    for start, end in [(0, len(content)), (5000, 300_000), (8191, 8193), (len(content) - 1,
                                                                        len(content))]:
        got = b"".join([c async for c in file_bytes(store, node, start, end)])
        assert got == content[start:end]
    await store.close()


async def test_corrupt_block_read_ahead_is_quarantined(tmp_path: Path) -> None:
    content = os.urandom(8192 * 40)
    (tmp_path / "f.bin").write_bytes(content)
    store = await TieredStore.open(tmp_path / "repo", DISK_ONLY)
    root = await add_file(store, tmp_path / "f.bin")
    node = (await resolve_path(store, root, [])).node
    assert node is not None
    leaf_cids = [child.cid async for child, _ in file_nodes(store, node, 0, len(content))
                 if child.unixfs is None]
    # Corrupt the fifth leaf on disk: the walk yields the four before it, then fails.
    bad = leaf_cids[4]
    name = DiskTier(tmp_path / "repo" / "blocks").path_for(bytes(bad.digest)).name
    damage_block(tmp_path / "repo", bytes(bad.digest), b"flipped")  # a pack record here
    got = bytearray()
    with pytest.raises(BlockNotFoundError):
        async for chunk in file_bytes(store, node, 0, len(content)):
            got += chunk
    assert bytes(got) == content[:4 * 8192]
    assert (tmp_path / "repo" / "blocks" / ".quarantine" / name).exists()
    assert not store.is_held(bad)
    await store.close()


class CountingStore:
    """The real store, counting the reads started ahead that nobody has awaited yet."""

    def __init__(self, store: TieredStore) -> None:
        self.store = store
        self.waiting = 0
        self.most = 0

    async def get(self, cid: CID) -> bytes:
        return await self.store.get(cid)

    def read_soon(self, cid: CID) -> CountedRead | None:
        pending = self.store.read_soon(cid)
        if pending is None:
            return None
        self.waiting += 1
        self.most = max(self.most, self.waiting)
        return CountedRead(self, pending)


class CountedRead:
    def __init__(self, owner: CountingStore, pending: PendingRead) -> None:
        self.owner = owner
        self.pending = pending

    async def result(self) -> bytes:
        self.owner.waiting -= 1
        return await self.pending.result()


async def test_reads_ahead_of_a_deep_dag_are_bounded_for_the_walk(tmp_path: Path) -> None:
    """Each level of a deep unbalanced file links a deeper level first, then 7 leaves: a
    level holds its leaves' reads while the walk goes down, and the walk as a whole holds
    at most READ_AHEAD_TOTAL (was up to 7 a level: 7 x depth)."""
    store = await TieredStore.open(tmp_path, StoreConfig(max_size=10**8, memory_size=10**8))
    depth, leaf_size = 40, 1000
    content = b""
    node_cid, node_data = raw_block(size=leaf_size)
    await store.put(node_cid, node_data)
    content, size = node_data, leaf_size
    for _ in range(depth):
        leaves = [raw_block(size=leaf_size) for _ in range(7)]
        for cid, data in leaves:
            await store.put(cid, data)
        sizes = (size,) + (leaf_size,) * 7
        unixfs = fs.UnixFSData(fs.FILE, filesize=sum(sizes), blocksizes=sizes).encode()
        node_cid, node_data = dagpb_block(
            [(node_cid, len(node_data) + size)] + [(c, leaf_size) for c, _ in leaves],
            data=unixfs)
        await store.put(node_cid, node_data)
        content += b"".join(d for _, d in leaves)
        size = sum(sizes)
    counting = CountingStore(store)
    root = (await resolve_path(counting, node_cid, [])).node
    assert root is not None
    got = b"".join([c async for c in file_bytes(counting, root, 0, size)])
    assert got == content
    assert READ_AHEAD < counting.most <= READ_AHEAD_TOTAL < 7 * depth
    await store.close()


async def test_identity_children_are_not_kept_in_the_cid_cache(tmp_path: Path) -> None:
    """The walk's cache of child CIDs keeps short ones only: an identity CID carries its
    data (up to a block), so a DAG of big identity links would pin twice its size."""
    from multiformats import multihash

    from ipfs_kit_node import dagwalk

    store = await TieredStore.open(tmp_path, StoreConfig(max_size=10**8))
    inline = os.urandom(20_000)
    big = CID("base32", 1, "raw", multihash.digest(inline, "identity"))
    small = CID("base32", 1, "raw", multihash.digest(b"tiny", "identity"))
    stored, data = raw_block(size=3000)
    await store.put(stored, data)
    sizes = (len(inline), 4, len(data))
    node_cid, node_data = dagpb_block(
        [(big, len(inline)), (small, 4), (stored, len(data))],
        data=fs.UnixFSData(fs.FILE, filesize=sum(sizes), blocksizes=sizes).encode())
    await store.put(node_cid, node_data)
    root = (await resolve_path(store, node_cid, [])).node
    assert root is not None
    dagwalk._child_cids.clear()
    got = b"".join([c async for c in file_bytes(store, root, 0, sum(sizes))])
    assert got == inline + b"tiny" + data
    assert list(dagwalk._child_cids) == [bytes(stored)]
    await store.close()


async def test_corrupt_block_read_ahead_and_left_is_dropped(tmp_path: Path) -> None:
    """A read started ahead that nobody awaits (the client left) still drops a corrupt
    block from the index and logs it: the file is quarantined either way, and the index
    must not go on saying the block is here."""
    import structlog
    import trio

    store = await TieredStore.open(tmp_path, DISK_ONLY)
    cid, data = raw_block(size=5000)
    await store.put(cid, data)
    name = DiskTier(tmp_path / "blocks").path_for(bytes(cid.digest)).name
    damage_block(tmp_path, bytes(cid.digest), b"flipped")  # a pack record here
    with structlog.testing.capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run)
            pending = store.read_soon(cid)
            assert pending is not None and store.is_local(cid)
            del pending  # never awaited
            with trio.fail_after(10):
                while store.is_local(cid) or store.is_held(cid):
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    assert (tmp_path / "blocks" / ".quarantine" / name).exists()
    assert [e for e in logs if e["event"].startswith("corrupt block quarantined")
            and e["cid"] == str(cid)], logs
    assert store.read_soon(cid) is None


async def test_a_block_removed_while_read_stays_out_of_memory(tmp_path: Path) -> None:
    """The memory tier holds only blocks the store holds (read_soon trusts it without an
    index lookup): a disk read begun before a delete and ending after it leaves nothing in
    memory, and while a corrupt block is being dropped no read of it starts (one buffered an
    access again for a block leaving the index)."""
    import trio

    from ipfs_kit_node.storage.blocks import key_of

    config = StoreConfig(max_size=10**8, memory_size=10**8)
    store = await TieredStore.open(tmp_path, config)
    (cid, data), (bad, bad_data) = raw_block(size=5000), raw_block(size=5001)
    await store.put(cid, data)
    await store.put(bad, bad_data)
    await store.close()
    store = await TieredStore.open(tmp_path, config)  # memory tier empty: reads go to disk
    pending = store.read_soon(cid)
    assert pending is not None
    assert await store.delete(cid)
    assert await pending.result() == data  # begun before the delete: its bytes
    assert key_of(cid) not in store._memory and store.read_soon(cid) is None
    damage_block(tmp_path, bytes(bad.digest), b"flipped")  # a pack record here

    async def read_meanwhile() -> None:  # as a walk would, at every turn of the loop
        while True:
            store.read_soon(bad)
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_meanwhile)
        with pytest.raises(BlockNotFoundError):
            await store.get(bad)
        nursery.cancel_scope.cancel()
    assert key_of(bad) not in store._touched  # no access buffered after the drop
    assert key_of(bad) not in store._memory and not store.is_held(bad)
    await store.close()
