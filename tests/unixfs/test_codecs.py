"""dag-pb and UnixFS codecs: round trips and clear errors that name the block."""

from __future__ import annotations

from pathlib import Path

import pytest
from dag import dagpb_block, raw_block

from ipfs_kit_node.codecs import dagpb
from ipfs_kit_node.errors import CodecError
from ipfs_kit_node.storage import StoreConfig, TieredStore
from ipfs_kit_node.unixfs import NotAFileError, cat, import_bytes, ls
from ipfs_kit_node.unixfs import data as fs
from ipfs_kit_node.unixfs.params import ImportParams


def test_dagpb_round_trip() -> None:
    leaf, _ = raw_block(b"x")
    link = dagpb.PBLink(leaf, "name", 1)
    encoded = dagpb.encode([link], b"\x08\x01")
    node = dagpb.decode(encoded)
    assert node.links == (link,) and node.data == b"\x08\x01"


@pytest.mark.parametrize("garbage", [b"\xff", b"\x0a\x05ab", b"\x12\x03\x0a\x01\x00",
                                     b"\x0a\x00\x12\x00", b"\x18\x01"])
def test_malformed_dagpb_names_the_block(garbage: bytes) -> None:
    with pytest.raises(CodecError, match="malformed dag-pb block bafyTEST"):
        dagpb.decode(garbage, "bafyTEST")


def test_unixfs_data_round_trip_and_errors() -> None:
    data = fs.UnixFSData(fs.FILE, b"abc", filesize=10, blocksizes=(3, 7))
    assert fs.decode(data.encode()) == data
    with pytest.raises(CodecError, match="in block QmX"):
        fs.decode(b"\x08\x63", "QmX")  # type 99
    with pytest.raises(CodecError, match="in block QmX"):
        fs.decode(b"\x12\x10ab", "QmX")  # truncated data


async def test_exporter_errors_name_the_cid(tmp_path: Path) -> None:
    store = await TieredStore.open(tmp_path, StoreConfig())
    # A dag-pb node whose Data is not UnixFS.
    bad, body = dagpb_block([], data=b"\x08\x63")
    await store.put(bad, body)
    with pytest.raises(CodecError, match=str(bad)):
        _ = [c async for c in cat(store, bad)]
    # A file that links to a directory node.
    folder, folder_body = dagpb_block([], data=fs.UnixFSData(fs.DIRECTORY).encode())
    await store.put(folder, folder_body)
    with pytest.raises(NotAFileError, match="is a directory"):
        _ = [c async for c in cat(store, folder)]
    broken, broken_body = dagpb_block([(folder, 10)],
                                      data=fs.UnixFSData(fs.FILE, filesize=10,
                                                                  blocksizes=(10,)).encode())
    await store.put(broken, broken_body)
    with pytest.raises(CodecError, match="inside a file"):
        _ = [c async for c in cat(store, broken)]
    leaf, data = raw_block(b"just bytes")
    await store.put(leaf, data)
    with pytest.raises(NotAFileError, match="not a directory"):
        _ = [e async for e in ls(store, leaf)]
    await store.close()


async def test_round_trip_through_the_store(tmp_path: Path) -> None:
    store = await TieredStore.open(tmp_path, StoreConfig())
    data = bytes(range(256)) * 1000
    blocks, entry = import_bytes(data, ImportParams(chunk_size=1000, max_links=5))
    for block in blocks:
        await store.put(block.cid, block.data)
    assert b"".join([c async for c in cat(store, entry.cid)]) == data
    await store.close()
