"""Built-in task handlers on a real store: inputs by CID, outputs as UnixFS files."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from ipfs_kit_node.protocols.tasks import Task
from ipfs_kit_node.roles.handlers import (
    HandlerError,
    TaskContext,
    load_handlers,
    run_task,
)
from ipfs_kit_node.storage import StoreConfig, TieredStore
from ipfs_kit_node.unixfs import cat, import_bytes
from ipfs_kit_node.unixfs.params import ImportParams


async def add(store: TieredStore, data: bytes) -> str:
    blocks, entry = import_bytes(data, ImportParams(chunk_size=4096))
    for block in blocks:
        await store.put(block.cid, block.data)
    return str(entry.cid)


async def read(store: TieredStore, cid: str) -> bytes:
    return b"".join([chunk async for chunk in cat(store, cid)])


async def test_builtin_handlers(tmp_path: Path) -> None:
    store = await TieredStore.open(tmp_path, StoreConfig(parquet_export=False))
    a, b = os.urandom(10_000), os.urandom(5_000)
    cid_a, cid_b = await add(store, a), await add(store, b)
    handlers = load_handlers()
    assert {"sha256", "unixfs-stat", "concat"} <= set(handlers)
    ctx = TaskContext(store)

    out = await run_task(handlers, ctx, Task("t1", "sha256", inputs=(cid_a,)))
    assert (await read(store, out)).strip().decode() == hashlib.sha256(a).hexdigest()

    out = await run_task(handlers, ctx, Task("t2", "concat", inputs=(cid_a, cid_b)))
    assert await read(store, out) == a + b

    out = await run_task(handlers, ctx, Task("t3", "unixfs-stat", inputs=(cid_a,)))
    (stat,) = json.loads(await read(store, out))
    assert stat["size"] == 10_000 and stat["type"] == "file" and stat["links"] == 3
    await store.close()


async def test_allow_list_and_bad_inputs(tmp_path: Path) -> None:
    store = await TieredStore.open(tmp_path, StoreConfig(parquet_export=False))
    cid = await add(store, b"x")
    only_sha = load_handlers(allow={"sha256"})
    assert set(only_sha) == {"sha256"}
    with pytest.raises(HandlerError, match="not allowed on this worker"):
        await run_task(only_sha, TaskContext(store), Task("t", "concat", inputs=(cid,)))
    with pytest.raises(HandlerError, match="exactly one input"):
        await run_task(only_sha, TaskContext(store), Task("t", "sha256", inputs=(cid, cid)))
    await store.close()
