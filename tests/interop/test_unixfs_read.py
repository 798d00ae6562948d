"""Reading DAGs made by the reference importer: files, folders and HAMT-sharded folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import js_import

from ipfs_kit_node.storage import StoreConfig, TieredStore
from ipfs_kit_node.unixfs import cat, ls, resolve

pytestmark = pytest.mark.interop


async def load_blocks(store: TieredStore, folder: Path) -> None:
    for f in folder.iterdir():
        await store.put(f.name, f.read_bytes())


async def read_tree(store: TieredStore, cid: str, into: dict[str, bytes], prefix: str) -> None:
    async for entry in ls(store, cid):
        path = f"{prefix}/{entry.name}"
        try:
            into[path] = b"".join([c async for c in cat(store, entry.cid)])
        except Exception:
            await read_tree(store, str(entry.cid), into, path)


@pytest.mark.parametrize("profile", ["unixfs-v0-2015", "unixfs-v1-2025"])
async def test_hamt_sharded_folder_made_by_helia(tmp_path: Path, profile: str) -> None:
    src = tmp_path / "many"
    src.mkdir()
    files = {f"file-{i:03d}.txt": os.urandom(i * 37) for i in range(300)}
    (src / "nested").mkdir()
    (src / "nested" / "inner").write_bytes(b"inside a sharded folder")
    for name, data in files.items():
        (src / name).write_bytes(data)
    blocks = tmp_path / "blocks"
    blocks.mkdir()
    root = js_import(src, {"profile": profile, "blocksDir": str(blocks),
                           "shardSplitThresholdBytes": 1000})[-1]["cid"]
    store = await TieredStore.open(tmp_path / "repo", StoreConfig())
    await load_blocks(store, blocks)
    assert (await resolve(store, root)).kind == "hamt-sharded-directory"
    got: dict[str, bytes] = {}
    await read_tree(store, root, got, "")
    assert got == {**{f"/{k}": v for k, v in files.items()},
                   "/nested/inner": b"inside a sharded folder"}
    await store.close()


async def test_multi_level_file_made_by_helia(tmp_path: Path) -> None:
    data = os.urandom(200 * 1024 + 3)
    f = tmp_path / "f"
    f.write_bytes(data)
    blocks = tmp_path / "blocks"
    blocks.mkdir()
    root = js_import(f, {"cidVersion": 0, "rawLeaves": False, "chunkSize": 1024,
                         "maxChildrenPerNode": 7, "blocksDir": str(blocks)})[-1]["cid"]
    store = await TieredStore.open(tmp_path / "repo", StoreConfig())
    await load_blocks(store, blocks)
    assert b"".join([c async for c in cat(store, root)]) == data
    await store.close()
