"""The exporter against hostile DAGs, in-process over a real store: deep chains, deep HAMTs,
lying sizes, and the lazy dag-pb reader agreeing with the strict codec."""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

import pytest
import trio
from dag import dagpb_block, raw_block
from multiformats import CID, multihash

from ipfs_kit_node.cid import cid_from_bytes, cid_text, to_cid
from ipfs_kit_node.codecs import dagpb
from ipfs_kit_node.errors import CodecError
from ipfs_kit_node.storage import StoreConfig, TieredStore
from ipfs_kit_node.unixfs import data as fs
from ipfs_kit_node.unixfs.exporter import (
    MAX_DEPTH,
    MAX_HAMT_DEPTH,
    DagTooDeepError,
    NotAFileError,
    UnixFSSizeError,
    cat,
    fetch_dag,
    ls,
    resolve,
)
from ipfs_kit_node.unixfs.pbscan import read_link, split


def pb_node(links: list[tuple[CID, str | None, int]], unixfs: fs.UnixFSData
            ) -> tuple[CID, bytes]:
    body = dagpb.encode([dagpb.PBLink(c, n, s) for c, n, s in links], unixfs.encode())
    return CID("base32", 1, "dag-pb", multihash.digest(body, "sha2-256")), body


def file_chain(depth: int, content: bytes = b"hello") -> tuple[CID, list[tuple[CID, bytes]]]:
    """A file whose bytes sit ``depth`` one-link nodes below its root."""
    cid, data = raw_block(content)
    blocks = [(cid, data)]
    size = len(content)
    for _ in range(depth):
        cid, data = pb_node([(cid, None, size)],
                            fs.UnixFSData(fs.FILE, filesize=size, blocksizes=(size,)))
        blocks.append((cid, data))
    return cid, blocks


def hamt_chain(depth: int) -> tuple[CID, list[tuple[CID, bytes]]]:
    """A sharded folder whose one entry sits ``depth`` sub-shards below its root."""
    leaf, data = raw_block(b"entry")
    blocks = [(leaf, data)]
    shard = fs.UnixFSData(fs.HAMT_SHARD, data=b"\x01", hash_type=0x22, fanout=256)
    cid, body = pb_node([(leaf, "00file", 5)], shard)
    blocks.append((cid, body))
    for _ in range(depth):
        cid, body = pb_node([(cid, "00", 0)], shard)
        blocks.append((cid, body))
    return cid, blocks


async def open_store(tmp_path: Path, blocks: list[tuple[CID, bytes]]) -> TieredStore:
    store = await TieredStore.open(tmp_path, StoreConfig())
    for cid, data in blocks:
        await store.put(cid, data)
    return store


def test_lazy_reader_agrees_with_the_strict_codec() -> None:
    rng = random.Random(7)
    for _ in range(50):
        links = []
        for _ in range(rng.randrange(0, 40)):
            digest = multihash.digest(os.urandom(8), "sha2-256")
            cid = CID("base58btc", 0, "dag-pb", digest) if rng.random() < 0.5 else \
                CID("base32", 1, rng.choice(["raw", "dag-pb"]), digest)
            name = rng.choice([None, "", "a", "ü" * rng.randrange(1, 50)])
            links.append(dagpb.PBLink(cid, name, rng.choice([None, 0, 2**40])))
        data = rng.choice([None, b"", b"\x08\x01", os.urandom(300)])
        block = dagpb.encode(links, data)
        layout, _, count = split(block, "X")
        assert layout is not None and layout.data == data and count == len(links)
        sliced, pos, n = split(block, "X", max_links=3)
        while sliced is None:
            sliced, pos, n = split(block, "X", pos, n, n + 3)
        assert sliced == layout
        pos, got = 0, []
        while pos < layout.links_end:
            link, pos = read_link(block, pos, "X")
            got.append(link)
        assert [(to_cid(g.cid), g.name, g.tsize) for g in got] == \
            [(link.cid, link.name, link.tsize) for link in links]
        for g, link in zip(got, links, strict=True):
            assert cid_text(g.cid) == str(link.cid)
            assert cid_from_bytes(g.cid) == link.cid and str(cid_from_bytes(g.cid)) == str(link.cid)


@pytest.mark.parametrize("garbage", [b"\xff", b"\x0a\x05ab", b"\x12\x03\x0a\x01\x00",
                                     b"\x0a\x00\x12\x00", b"\x18\x01"])
async def test_malformed_blocks_name_the_cid(tmp_path: Path, garbage: bytes) -> None:
    cid = CID("base32", 1, "dag-pb", multihash.digest(garbage, "sha2-256"))
    store = await open_store(tmp_path, [(cid, garbage)])
    with pytest.raises(CodecError, match=str(cid)):
        _ = [c async for c in cat(store, cid)]
    await store.close()


async def test_deep_file_chain_is_a_clear_error(tmp_path: Path) -> None:
    deep, blocks = file_chain(MAX_DEPTH + 100)
    ok, more = file_chain(MAX_DEPTH - 1, b"deep but allowed")
    store = await open_store(tmp_path, blocks + more)
    with pytest.raises(DagTooDeepError, match=f"over {MAX_DEPTH} levels deep at bafy"):
        _ = [c async for c in cat(store, deep)]
    assert b"".join([c async for c in cat(store, ok)]) == b"deep but allowed"
    with pytest.raises(DagTooDeepError, match=str(deep)):
        await fetch_dag(store, deep)
    assert await fetch_dag(store, ok) == MAX_DEPTH
    await store.close()


async def test_deep_hamt_is_a_clear_error(tmp_path: Path) -> None:
    deep, blocks = hamt_chain(MAX_HAMT_DEPTH + 5)
    fine, more = hamt_chain(10)
    store = await open_store(tmp_path, blocks + more)
    with pytest.raises(DagTooDeepError, match="shards deep"):
        _ = [e async for e in ls(store, deep)]
    assert [e.name async for e in ls(store, fine)] == ["file"]
    await store.close()


async def test_lying_sizes_are_errors_never_wrong_bytes(tmp_path: Path) -> None:
    five, five_data = raw_block(b"12345")
    big, big_data = raw_block(b"x" * 200)
    # Claims a terabyte, holds 5 bytes inline.
    tb, tb_data = pb_node([], fs.UnixFSData(fs.FILE, b"hello", filesize=10**12))
    # Claims 5 bytes (consistent with itself), but its child holds 200.
    short, short_data = pb_node([(big, None, 5)],
                                fs.UnixFSData(fs.FILE, filesize=5, blocksizes=(5,)))
    # One link, no blocksizes.
    bare, bare_data = pb_node([(five, None, 5)], fs.UnixFSData(fs.FILE, filesize=5))
    # Honest first child, lying second child: bytes of the first, then the error.
    inner, inner_data = pb_node([(big, None, 5)],
                                fs.UnixFSData(fs.FILE, filesize=5, blocksizes=(5,)))
    two, two_data = pb_node([(five, None, 5), (inner, None, 5)],
                            fs.UnixFSData(fs.FILE, filesize=10, blocksizes=(5, 5)))
    folder, folder_data = pb_node([(tb, "huge", 10)], fs.UnixFSData(fs.DIRECTORY))
    store = await open_store(tmp_path, [(five, five_data), (big, big_data), (tb, tb_data),
                                        (short, short_data), (bare, bare_data),
                                        (inner, inner_data), (two, two_data),
                                        (folder, folder_data)])
    with pytest.raises(UnixFSSizeError, match=f"{tb} declares 1000000000000 bytes but holds 5"):
        await resolve(store, tb)
    with pytest.raises(UnixFSSizeError, match=f"child {big} holds 5 bytes, but the child "
                                              "holds 200"):
        _ = [c async for c in cat(store, short)]
    with pytest.raises(UnixFSSizeError, match="1 links but 0 blocksizes"):
        _ = [c async for c in cat(store, bare)]
    got: list[bytes] = []
    with pytest.raises(UnixFSSizeError, match=str(inner)):
        async for chunk in cat(store, two):
            got.append(chunk)
    assert got == [b"12345"]
    entries = [e async for e in ls(store, folder)]  # the listing itself is fine...
    with pytest.raises(UnixFSSizeError, match=str(tb)):  # ...resolving the entry is not
        await resolve(store, entries[0].cid)
    await store.close()


async def test_symlink_is_not_a_file(tmp_path: Path) -> None:
    link, body = pb_node([], fs.UnixFSData(fs.SYMLINK, b"../elsewhere"))
    store = await open_store(tmp_path, [(link, body)])
    with pytest.raises(NotAFileError, match=re.escape("is a symlink (to '../elsewhere')")):
        _ = [c async for c in cat(store, link)]
    node = await resolve(store, link)
    assert node.type_code == 4 and node.target == b"../elsewhere" and node.size == 0
    await store.close()


async def test_long_walks_yield_to_the_event_loop(tmp_path: Path) -> None:
    """A walk over blocks served from memory still lets other tasks run."""
    entries = [raw_block(os.urandom(8)) for _ in range(3000)]
    folder, body = pb_node([(c, f"e{i}", 8) for i, (c, _) in enumerate(entries)],
                           fs.UnixFSData(fs.DIRECTORY))
    store = await open_store(tmp_path, [*entries, (folder, body)])
    ran = 0

    async def other_task() -> None:
        nonlocal ran
        while True:
            await trio.sleep(0)
            ran += 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other_task)
        await trio.sleep(0)
        ran = 0
        count = 0
        async for entry in ls(store, folder):
            await resolve(store, entry.cid)
            count += 1
        seen = ran
        nursery.cancel_scope.cancel()
    assert count == 3000 and seen > 0
    await store.close()


def test_dagpb_block_helper_still_reads(tmp_path: Path) -> None:
    """tests/dag.py's nodes (links with empty names) read as before."""
    leaf, _ = raw_block(b"x")
    cid, body = dagpb_block([(leaf, 1)])
    layout, _, count = split(body, cid)
    assert layout is not None and count == 1 and layout.data == b"\x08\x02"


async def test_fetch_dag_bounds_what_it_holds(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from ipfs_kit_node.unixfs import exporter

    entries = [raw_block(os.urandom(8)) for _ in range(20)]
    top, body = pb_node([(c, f"e{i}", 8) for i, (c, _) in enumerate(entries)],
                        fs.UnixFSData(fs.DIRECTORY))
    store = await open_store(tmp_path, [*entries, (top, body)])
    assert await fetch_dag(store, top) == 21
    monkeypatch.setattr(exporter, "MAX_PENDING", 10)
    with pytest.raises(DagTooDeepError, match="over 10 blocks to read at once"):
        await fetch_dag(store, top)
    await store.close()
