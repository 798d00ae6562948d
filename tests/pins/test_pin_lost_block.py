"""A pinned block found corrupt is dropped, but its pin stays, as in Kubo: `pin ls` still
names it, `pin verify` reports it missing, GC keeps it once it is stored again, and `pin rm`
lets it go. (Its row used to go with its pin count: the pin silently stopped covering it.)
One real daemon, memory tier off so every read goes to the disk."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import httpx
from blockfiles import damage_block
from helpers import Daemon
from multiformats import CID, multihash

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
