"""The upload path: BlockWriter's background group commit, the frame decoder, pin walks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from dag import dagpb_block, raw_block
from hypothesis import given, settings
from hypothesis import strategies as st

from ipfs_kit_node.storage import BlockNotFoundError, HashMismatchError, StoreConfig, TieredStore
from ipfs_kit_node.storage.frames import FrameDecoder, FrameError, encode_frame
from ipfs_kit_node.storage.writer import NODE_COST, LinkTable, block_writer

CONFIG = StoreConfig(max_size=10**8, memory_size=0)


def lone(exc: BaseException) -> BaseException:
    """The one error a trio group carries (the HTTP edge unwraps it the same way)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


async def test_writer_stores_every_block_in_batches(tmp_path: Path) -> None:
    store = await TieredStore.open(tmp_path, CONFIG)
    blocks = [raw_block(size=1 + (i * 7919) % 300_000) for i in range(200)]
    await store.put(*blocks[5])  # already there: not new
    async with block_writer(store) as writer:
        for cid, data in [*blocks, blocks[0]]:  # a duplicate in the stream too
            await writer.add(bytes(cid), data)
    assert writer.new == 199
    assert 1 <= writer.batches <= 200
    for cid, data in blocks:
        assert await store.get(cid) == data
    await store.close()


async def test_a_bad_block_stops_the_upload_with_its_error(tmp_path: Path) -> None:
    store = await TieredStore.open(tmp_path, CONFIG)
    good = [raw_block(size=50_000) for _ in range(20)]
    bad_cid, _ = raw_block(size=10)
    with pytest.raises(BaseException) as info:
        async with block_writer(store) as writer:
            for cid, data in good:
                await writer.add(cid, data)
            await writer.add(bad_cid, b"not those bytes")
            for _ in range(20):
                await writer.add(*raw_block(size=50_000))
    assert isinstance(lone(info.value), HashMismatchError)
    assert not store.is_local(bad_cid)
    cid, data = raw_block()
    await store.put(cid, data)  # the store goes on
    assert await store.get(cid) == data
    await store.close()


async def test_nothing_from_a_bad_block_on_is_stored(tmp_path: Path) -> None:
    """Blocks are verified ahead of the storer (in their own thread) but stored only once
    verified, in order: the blocks behind a bad one are never written."""
    store = await TieredStore.open(tmp_path, CONFIG)
    before = [raw_block(size=300_000) for _ in range(30)]  # more than one verify hop
    after = [raw_block(size=1000 + i) for i in range(50)]
    bad_cid, _ = raw_block(size=10)
    with pytest.raises(BaseException) as info:
        async with block_writer(store) as writer:
            for cid, data in before:
                await writer.add(bytes(cid), data)
            await writer.add(bytes(bad_cid), b"not those bytes")
            for cid, data in after:
                await writer.add(cid, data)
    assert isinstance(lone(info.value), HashMismatchError)
    assert not any(store.is_local(cid) for cid, _ in [(bad_cid, b""), *after])
    await store.close()


async def test_trusted_blocks_skip_the_verifier(tmp_path: Path) -> None:
    store = await TieredStore.open(tmp_path, CONFIG)
    blocks = [raw_block(size=200_000) for _ in range(40)]
    async with block_writer(store, hashed=True) as writer:
        for cid, data in blocks:
            await writer.add(cid, data)
    assert writer.new == 40
    for cid, data in blocks:
        assert await store.get(cid) == data
    await store.close()


async def test_links_of_a_pin_walk(tmp_path: Path) -> None:
    """The pin walk's link reader (fast scanner) gives the same CIDs, v0 and v1 alike."""
    store = await TieredStore.open(tmp_path, CONFIG)
    leaves = [raw_block(size=100 + i) for i in range(3)]
    for version in (0, 1):
        cid, body = dagpb_block([(c, len(d)) for c, d in leaves], version=version)
        assert [str(c) for c in store.links(cid, body)] == [str(c) for c, _ in leaves]
        for c, d in leaves:
            await store.put(c, d)
        await store.put(cid, body)
        await store.pin(cid)
        assert store.is_pinned(leaves[1][0])
    await store.close()


async def test_an_uploads_pin_walks_the_links_it_verified(tmp_path: Path) -> None:
    """The writer notes each verified dag-pb node's children: the pin at the end of an upload
    reads no block back, yet counts every block, and still refuses a DAG with one gone."""
    store = await TieredStore.open(tmp_path, CONFIG)  # no memory tier: a read is a disk read
    leaves = [dagpb_block([], data=b"\x08\x02\x12\x04" + os.urandom(4), version=0)
              for _ in range(5)]
    mid_cid, mid = dagpb_block([(c, len(d)) for c, d in leaves[:3]], version=0)
    root_cid, root = dagpb_block([(mid_cid, len(mid)), *[(c, len(d)) for c, d in leaves[3:]]],
                                 version=0)
    async with block_writer(store, links=True) as writer:
        for cid, data in [*leaves, (mid_cid, mid), (root_cid, root)]:
            await writer.add(bytes(cid), data)
    assert writer.links[bytes(root_cid.digest)] == [mid_cid, *(c for c, _ in leaves[3:])]
    assert writer.links[bytes(leaves[0][0].digest)] == []
    before = store.stats().disk.lookups
    await store.pin(root_cid, links=writer.links)
    assert store.stats().disk.lookups == before  # nothing read back
    assert all(store.pin_type(c) == "indirect" for c, _ in [*leaves, (mid_cid, mid)])
    await store.unpin(root_cid)  # the counts went in right: they all come out
    assert not any(store.is_pinned(c) for c, _ in [*leaves, (mid_cid, mid), (root_cid, root)])
    await store.delete(leaves[4][0])
    with pytest.raises(BlockNotFoundError):
        await store.pin(root_cid, links=writer.links)
    assert not store.is_pinned(root_cid)
    await store.close()


async def test_links_noted_only_for_a_pin_and_within_budget(tmp_path: Path) -> None:
    """Children are noted only when the upload pins, kept as bytes within a budget; nodes
    past it are read back by the pin, which still counts every block."""
    store = await TieredStore.open(tmp_path, CONFIG)
    leaves = [raw_block(size=50 + i) for i in range(40)]
    mids = [dagpb_block([(c, len(d)) for c, d in leaves[i:i + 10]], version=v)
            for i, v in ((0, 0), (10, 1), (20, 0), (30, 1))]
    root_cid, root = dagpb_block([(c, len(d)) for c, d in mids], version=0)
    blocks = [*leaves, *mids, (root_cid, root)]
    async with block_writer(store) as writer:
        for cid, data in blocks:
            await writer.add(bytes(cid), data)
    assert len(writer.links) == 0  # no pin: nothing noted
    table = LinkTable(budget=2 * (NODE_COST + 10 * 37))  # room for two of the five nodes
    async with block_writer(store, links=True) as writer:
        writer.links = table
        for cid, data in blocks:
            await writer.add(bytes(cid), data)
    assert len(table) == 2 and table.links == 20 and table.full
    assert table[bytes(mids[0][0].digest)] == [c for c, _ in leaves[:10]]
    assert table[bytes(mids[1][0].digest)] == [c for c, _ in leaves[10:20]]
    before = store.stats().disk.lookups
    await store.pin(root_cid, links=table)
    assert store.stats().disk.lookups > before  # the rest read back
    assert all(store.pin_type(c) == "indirect" for c, _ in blocks[:-1])
    await store.unpin(root_cid)
    assert not any(store.is_pinned(c) for c, _ in blocks)
    await store.close()


@settings(max_examples=50, deadline=None)
@given(sizes=st.lists(st.integers(0, 5000), min_size=1, max_size=8),
       cuts=st.lists(st.integers(1, 4000), min_size=1, max_size=20))
def test_frames_survive_any_chunking(sizes: list[int], cuts: list[int]) -> None:
    frames = [(os.urandom(36), os.urandom(n)) for n in sizes]
    stream = b"".join(encode_frame(c, d) for c, d in frames)
    decoder = FrameDecoder()
    got: list[tuple[bytes, bytes]] = []
    pos = i = 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        got += decoder.feed(stream[pos:pos + step])
        pos, i = pos + step, i + 1
    decoder.close()
    assert got == frames
    half = FrameDecoder()
    half.feed(stream[:-1])
    with pytest.raises(FrameError, match="ended inside a frame"):
        half.close()
