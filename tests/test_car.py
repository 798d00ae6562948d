"""CAR codec and DAG walks, in-process: bytes in, bytes out, no sockets.

Real DAGs come from our importer (Kubo's layout: balanced files, HAMT folders); the CAR reader
is fed in odd-sized pieces and must refuse forged, truncated and oversized input by name.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import libipld
import pytest
from multiformats import CID, multihash

from ipfs_kit_node.codecs import car, cborlinks
from ipfs_kit_node.codecs.car import CarBlock, CarError, CarHeader, CarReader
from ipfs_kit_node.dagwalk import (
    car_blocks,
    entity_range,
    file_bytes,
    resolve_path,
)
from ipfs_kit_node.errors import PathNotFoundError
from ipfs_kit_node.unixfs.importer import Added, import_path
from ipfs_kit_node.unixfs.params import Block, ImportParams


class MemBlocks:
    """A dict of verified blocks: what a BlockGetter needs, and a record of what was read."""

    def __init__(self) -> None:
        self.blocks: dict[bytes, bytes] = {}
        self.reads: list[bytes] = []

    def put(self, cid: CID, data: bytes) -> None:
        self.blocks[bytes(cid.digest)] = data

    async def get(self, cid: object) -> bytes:
        assert isinstance(cid, CID)
        self.reads.append(bytes(cid.digest))
        return self.blocks[bytes(cid.digest)]


def import_tree(path: Path, store: MemBlocks, params: ImportParams | None = None) -> CID:
    root = None
    for item in import_path(path, params or ImportParams(cid_version=1, raw_leaves=True)):
        if isinstance(item, Block):
            store.put(item.cid, item.data)
        elif isinstance(item, Added):
            root = item.entry.cid
    assert root is not None
    return root


def read_car(blob: bytes, piece: int = 4093) -> tuple[CarHeader, list[CarBlock]]:
    reader = CarReader()
    events: list[CarHeader | CarBlock] = []
    for i in range(0, len(blob), piece):
        events += reader.feed(blob[i:i + piece])
    reader.close()
    header = events[0]
    assert isinstance(header, CarHeader)
    blocks = [e for e in events[1:] if isinstance(e, CarBlock)]
    return header, blocks


def raw(data: bytes) -> tuple[CID, bytes]:
    return CID("base32", 1, "raw", multihash.digest(data, "sha2-256")), data


def test_roundtrip_in_odd_pieces() -> None:
    blocks = [raw(os.urandom(n)) for n in (0, 1, 1000, 300_000)]
    blob = car.encode_header([blocks[-1][0]]) + b"".join(car.encode_block(c, d)
                                                        for c, d in blocks)
    for piece in (1, 7, 65536):
        header, got = read_car(blob, piece)
        assert header.roots == (blocks[-1][0],) and header.version == 1
        assert [(b.cid, b.data) for b in got] == blocks


def test_header_is_dag_cbor_as_other_tools_read_it() -> None:
    cid, _ = raw(b"x")
    header = car.encode_header([cid])
    decoded = libipld.decode_dag_cbor(header[1:])
    assert decoded == {"roots": [bytes(cid)], "version": 1}
    assert cborlinks.decode(header[1:]) == {"roots": [cborlinks.Link(bytes(cid))],
                                            "version": 1}


def test_forged_block_is_refused_by_name() -> None:
    cid, _ = raw(b"the real bytes")
    blob = car.encode_header([cid]) + car.encode_block(cid, b"other bytes")
    with pytest.raises(CarError, match=str(cid)):
        CarReader().feed(blob)


def test_truncated_and_oversized() -> None:
    cid, data = raw(b"abc" * 100)
    blob = car.encode_header([cid]) + car.encode_block(cid, data)
    reader = CarReader()
    reader.feed(blob[:-5])
    with pytest.raises(CarError, match="middle of a section"):
        reader.close()
    with pytest.raises(CarError, match="before its header"):
        CarReader().close()
    huge = car.encode_header([cid]) + bytes([0xFF, 0xFF, 0xFF, 0x7F])
    with pytest.raises(CarError, match="over the"):
        CarReader().feed(huge)
    with pytest.raises(CarError, match="version 3"):
        body = libipld.encode_dag_cbor({"roots": [], "version": 3})
        CarReader().feed(bytes([len(body)]) + body)


def test_carv2_payload_is_read_and_index_ignored() -> None:
    blocks = [raw(os.urandom(500)) for _ in range(3)]
    v1 = car.encode_header([blocks[0][0]]) + b"".join(car.encode_block(c, d) for c, d in blocks)
    offset = len(car.CARV2_PRAGMA) + 40 + 13  # some padding before the payload
    header = bytes(16) + offset.to_bytes(8, "little") + len(v1).to_bytes(8, "little") + \
        (offset + len(v1)).to_bytes(8, "little")
    blob = car.CARV2_PRAGMA + header + bytes(13) + v1 + b"\x01index bytes we never read"
    for piece in (3, 1000):
        got_header, got = read_car(blob, piece)
        assert got_header.version == 2 and got_header.roots == (blocks[0][0],)
        assert [(b.cid, b.data) for b in got] == blocks


def test_carv2_padding_is_skipped_as_it_arrives_and_bounded() -> None:
    blocks = [raw(os.urandom(500))]
    v1 = car.encode_header([blocks[0][0]]) + car.encode_block(*blocks[0])
    pad = 3 << 20
    offset = len(car.CARV2_PRAGMA) + 40 + pad
    header = bytes(16) + offset.to_bytes(8, "little") + len(v1).to_bytes(8, "little") + \
        bytes(8)
    reader = CarReader()
    assert reader.feed(car.CARV2_PRAGMA + header) == []
    for _ in range(pad // 65536):
        assert reader.feed(bytes(65536)) == []
    assert len(reader._buf) < 2 << 20  # padding dropped as it goes, never all held
    events = reader.feed(v1)
    assert isinstance(events[0], CarHeader) and events[0].version == 2
    assert [(b.cid, b.data) for b in events[1:] if isinstance(b, CarBlock)] == blocks
    huge = bytes(16) + (2**50).to_bytes(8, "little") + (100).to_bytes(8, "little") + bytes(8)
    with pytest.raises(CarError, match=r"data offset .* past its header"):
        CarReader().feed(car.CARV2_PRAGMA + huge)


def test_cbor_links_in_order() -> None:
    a, b = raw(b"a")[0], raw(b"b")[0]
    body = libipld.encode_dag_cbor({"x": [car._Link(bytes(a)), 1, "s"], "y": {"z": car._Link(
        bytes(b))}, "bytes": b"\x01\x02"})
    value = cborlinks.decode(body)
    assert cborlinks.links(value) == [bytes(a), bytes(b)]
    assert value["bytes"] == b"\x01\x02" and not isinstance(value["bytes"], cborlinks.Link)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "big.bin").write_bytes(random.Random(1).randbytes(1_100_000))
    (root / "hello.txt").write_bytes(b"hello\n")
    (root / "sub" / "dup.txt").write_bytes(b"hello\n")  # the same block twice in the DAG
    many = root / "many"
    many.mkdir()
    for i in range(300):
        (many / f"file-{i:04d}-{'x' * 200}.txt").write_bytes(str(i).encode())
    return root


async def test_path_scopes_and_dups(tree: Path) -> None:
    store = MemBlocks()
    root = import_tree(tree, store)
    res = await resolve_path(store, root, ["sub", "big.bin"])
    assert len(res.roots) == 3 and res.roots[0] == root and res.is_file
    assert res.node is not None and res.node.size == 1_100_000

    block_scope = [c async for c, _ in car_blocks(store, res, "block")]
    assert block_scope == [c for c, _ in res.path_blocks]
    entity = [c async for c, _ in car_blocks(store, res, "entity")]
    assert len(entity) == 3 + 5  # root, sub, file node + five 256 KiB leaves
    data = b"".join([d async for c, d in car_blocks(store, res, "entity")
                     if c.codec.name == "raw"])
    assert data == (tree / "sub" / "big.bin").read_bytes()

    whole = await resolve_path(store, root, [])
    everything = [c async for c, _ in car_blocks(store, whole, "all")]
    assert len(everything) == len(set(everything)) == len(store.blocks)
    assert everything[0] == root


async def test_entity_bytes_reads_only_the_blocks_needed(tree: Path) -> None:
    store = MemBlocks()
    root = import_tree(tree, store)
    res = await resolve_path(store, root, ["sub", "big.bin"])
    got = [c async for c, _ in car_blocks(store, res, entity_bytes="262144:262150")]
    assert len(got) == 3 + 1  # the path, and the second leaf alone
    assert len([c async for c, _ in car_blocks(store, res, entity_bytes="-10:*")]) == 4
    assert len([c async for c, _ in car_blocks(store, res, entity_bytes="5000000:*")]) == 3
    assert entity_range("0:*", 10) == (0, 10)
    assert entity_range("499:-3", 1000) == (499, 998)
    assert entity_range("20:30", 10) is None
    with pytest.raises(ValueError):
        entity_range("a:b", 10)


async def test_file_ranges(tree: Path) -> None:
    store = MemBlocks()
    root = import_tree(tree, store)
    content = (tree / "sub" / "big.bin").read_bytes()
    res = await resolve_path(store, root, ["sub", "big.bin"])
    assert res.node is not None
    for start, end in [(0, 1), (262140, 262150), (1_099_990, 1_100_000), (0, 1_100_000)]:
        store.reads.clear()
        got = b"".join([c async for c in file_bytes(store, res.node, start, end)])
        assert got == content[start:end]
        if end - start < 20:
            assert len(store.reads) <= 2  # only the leaves holding the range


async def test_hamt_path_reads_one_shard_per_level(tree: Path) -> None:
    store = MemBlocks()
    params = ImportParams(cid_version=1, raw_leaves=True, shard_threshold=1000)
    root = import_tree(tree, store, params)
    name = f"file-0123-{'x' * 200}.txt"
    store.reads.clear()
    res = await resolve_path(store, root, ["many", name])
    assert res.is_file and res.node is not None and res.node.block == b"123"
    assert len(store.reads) <= 5
    assert res.roots[-1] == res.cid
    with pytest.raises(PathNotFoundError):
        await resolve_path(store, root, ["many", "nope"])
    with pytest.raises(PathNotFoundError):
        await resolve_path(store, root, ["hello.txt", "below-a-file"])
    shards = await resolve_path(store, root, ["many"])
    entity = [c async for c, _ in car_blocks(store, shards, "entity")]
    assert all(c.codec.name == "dag-pb" for c in entity)  # shards, no entries


async def test_dag_cbor_paths() -> None:
    store = MemBlocks()
    leaf = raw(b"leaf bytes")
    store.put(*leaf)
    body = libipld.encode_dag_cbor({"a": {"b": [car._Link(bytes(leaf[0]))]}, "n": 1})
    node = CID("base32", 1, "dag-cbor", multihash.digest(body, "sha2-256"))
    store.put(node, body)
    res = await resolve_path(store, node, ["a", "b", "0"])
    assert res.cid == leaf[0] and res.roots == (node, leaf[0])
    with pytest.raises(PathNotFoundError):
        await resolve_path(store, node, ["n", "x"])
    whole = await resolve_path(store, node, [])
    assert [c async for c, _ in car_blocks(store, whole)] == [node, leaf[0]]


async def test_folder_name_cache_is_bounded_by_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Folders of long names fill the name cache by bytes, not by a count of folders."""
    from ipfs_kit_node import dagwalk
    from ipfs_kit_node.codecs import dagpb
    from ipfs_kit_node.unixfs import data as fs

    monkeypatch.setattr(dagwalk, "_dir_cache", type(dagwalk._dir_cache)())
    monkeypatch.setattr(dagwalk, "_dir_cache_bytes", 0)
    monkeypatch.setattr(dagwalk, "DIR_CACHE_BYTES", 1 << 20)
    store = MemBlocks()
    leaf, data = raw(b"x")
    store.put(leaf, data)
    folders = []
    for d in range(8):
        links = [dagpb.PBLink(leaf, f"{d}-{i:04d}-" + "n" * 170, 1) for i in range(500)]
        block = dagpb.encode(links, fs.UnixFSData(type=fs.DIRECTORY).encode())
        cid = CID("base32", 1, "dag-pb", multihash.digest(block, "sha2-256"))
        store.put(cid, block)
        folders.append(cid)
    for d, cid in enumerate(folders):
        got = await resolve_path(store, cid, [f"{d}-0007-" + "n" * 170])
        assert got.cid == leaf
        assert 0 < dagwalk._dir_cache_bytes <= dagwalk.DIR_CACHE_BYTES
    assert 1 <= len(dagwalk._dir_cache) < len(folders)  # ~200 KB each: about five kept
    assert dagwalk._dir_cache_bytes == sum(size for _, size in dagwalk._dir_cache.values())
    big = [dagpb.PBLink(leaf, f"{i:05d}" + "n" * 200, 1) for i in range(2000)]
    block = dagpb.encode(big, fs.UnixFSData(type=fs.DIRECTORY).encode())
    cid = CID("base32", 1, "dag-pb", multihash.digest(block, "sha2-256"))
    store.put(cid, block)
    with pytest.raises(PathNotFoundError):
        await resolve_path(store, cid, ["absent"])
    assert bytes(cid.digest) not in dagwalk._dir_cache  # over a quarter of the budget


async def test_a_non_ascii_digit_path_segment_is_not_found() -> None:
    store = MemBlocks()
    leaf, data = raw(b"leaf")
    store.put(leaf, data)
    block = libipld.encode_dag_cbor({"list": [car._Link(bytes(leaf))] * 3})
    cid = CID("base32", 1, "dag-cbor", multihash.digest(block, "sha2-256"))
    store.put(cid, block)
    assert (await resolve_path(store, cid, ["list", "1"])).cid == leaf
    with pytest.raises(PathNotFoundError):
        await resolve_path(store, cid, ["list", "²"])
