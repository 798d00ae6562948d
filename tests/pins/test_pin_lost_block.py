"""A pinned block found corrupt is dropped, but its pin stays, as in Kubo: `pin ls` still
names it, `pin verify` reports it missing, GC keeps it once it is stored again, and `pin rm`
lets it go. (Its row used to go with its pin count: the pin silently stopped covering it.)
One real daemon, memory tier off so every read goes to the disk."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from blockfiles import damage_block
from dag import dagpb_block, raw_block
from helpers import Daemon
from multiformats import CID, multihash

from ipfs_kit_node.storage import BlockNotFoundError, StoreConfig, TieredStore

MakeDaemon = Callable[..., Daemon]
CHUNK = 256 * 1024


def test_a_pinned_block_found_corrupt_stays_pinned(daemon: MakeDaemon) -> None:
    d = daemon(name="a").start(env={"IPFS_KIT_STORAGE_MEMORY_SIZE": "0"})
    rpc = f"{d.rpc_url}/api/v0"
    data = os.urandom(3 * CHUNK)
    r = httpx.post(f"{rpc}/add?cid-version=1", files={"file": ("f", data)}, timeout=60)
    assert r.status_code == 200, r.text
    root = json.loads(r.text.splitlines()[-1])["Hash"]
    chunk = data[CHUNK:2 * CHUNK]
    digest = multihash.digest(chunk, "sha2-256")
    leaf = str(CID("base32", 1, "raw", digest))

    def post(path: str, **params: str) -> httpx.Response:
        return httpx.post(f"{rpc}/{path}", params=params, timeout=60)

    def indirect() -> set[str]:
        return set(post("pin/ls", type="indirect").json()["Keys"])

    assert leaf in indirect()
    damage_block(d.repo, bytes(digest))
    r = post("block/get", arg=leaf)
    assert r.status_code != 200, r.text  # found corrupt: quarantined and dropped

    through = {leaf: {"Type": f"indirect through {root}"}}
    assert post("pin/ls", arg=leaf).json()["Keys"] == through  # said: not pinned
    assert leaf in indirect()
    verify = [json.loads(line) for line in post("pin/verify").text.splitlines()]
    assert verify == [{"Cid": root, "BadNodes": [{"Cid": leaf, "Err": "missing"}]}]

    r = httpx.post(f"{rpc}/block/put?cid-codec=raw", files={"file": ("b", chunk)},
                   timeout=30)  # the good bytes come back (as a fetch would bring them)
    assert r.status_code == 200 and r.json()["Key"] == leaf, r.text
    assert post("repo/gc").status_code == 200
    r = post("block/get", arg=leaf)
    assert r.status_code == 200 and r.content == chunk  # GC took it: its count was gone
    assert post("pin/verify").text == ""  # every pin whole (Kubo: only bad ones shown)

    damage_block(d.repo, bytes(digest))
    assert post("block/get", arg=leaf).status_code != 200
    assert post("pin/rm", arg=root).status_code == 200
    assert indirect() == set() and post("pin/ls", arg=leaf).status_code == 500
    r = httpx.post(f"{rpc}/block/put?cid-codec=raw", files={"file": ("b", chunk)}, timeout=30)
    assert r.status_code == 200, r.text
    assert post("repo/gc").status_code == 200
    assert post("repo/stat").json()["NumObjects"] == 0  # nothing left pinned by a count


async def test_a_lost_inner_node_keeps_what_is_under_it_counted(tmp_path: Path) -> None:
    """Unpinning past a lost inner node cannot see the blocks under it: they stay counted
    (logged), never uncounted blindly (another pin holding that node would lose them)."""
    store = await TieredStore.open(tmp_path, StoreConfig(max_size=10**7, memory_size=0))
    leaf = raw_block(size=500)
    mid = dagpb_block([(leaf[0], 500)])
    root = dagpb_block([(mid[0], 600)])
    for cid, data in (leaf, mid, root):
        await store.put(cid, data)
    await store.pin(root[0])
    damage_block(tmp_path, bytes(mid[0].digest))
    with pytest.raises(BlockNotFoundError):
        await store.get(mid[0])
    assert store.pin_type(mid[0]) == "indirect"  # lost, still covered
    await store.unpin(root[0])
    assert store.pin_type(mid[0]) is None and store.pin_type(leaf[0]) == "indirect"
    await store.gc(full=True)
    assert await store.get(leaf[0]) == leaf[1]
    await store.close()
