"""A recursive pin covers what DAG-CBOR blocks link to, as Kubo's does (it covered the root
alone: `dag put --pin` of a node linking to a block, then GC, lost the block). Pins made
before keep being uncounted through dag-pb links only, so no other pin loses its count."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from dag import dagpb_block, raw_block
from helpers import Daemon, small_tmpfs
from multiformats import CID, multihash

from ipfs_kit_node.storage import StoreConfig, StoreFullError, TieredStore

MakeDaemon = Callable[..., Daemon]


def test_dag_put_pin_keeps_what_the_node_links_to(daemon: MakeDaemon) -> None:
    d = daemon(name="a").start()
    rpc = f"{d.rpc_url}/api/v0"

    def post(path: str, files: dict[str, tuple[str, bytes]] | None = None,
             **params: str) -> httpx.Response:
        return httpx.post(f"{rpc}/{path}", params=params, files=files, timeout=60)

    r = post("block/put", {"file": ("b", b"a leaf under a DAG-CBOR node")}, **{
        "cid-codec": "raw"})
    assert r.status_code == 200, r.text
    leaf = r.json()["Key"]
    node = json.dumps({"name": "x", "links": [{"/": leaf}]}).encode()
    r = post("dag/put", {"file": ("n", node)}, pin="true")
    assert r.status_code == 200, r.text
    root = r.json()["Cid"]["/"]

    r = post("pin/ls", arg=leaf)
    assert r.status_code == 200, r.text  # said: not pinned
    assert r.json()["Keys"] == {leaf: {"Type": f"indirect through {root}"}}
    assert post("repo/gc").status_code == 200
    r = post("block/get", arg=leaf)
    assert r.status_code == 200 and r.content == b"a leaf under a DAG-CBOR node"
    assert post("pin/rm", arg=root).status_code == 200
    assert post("repo/gc").status_code == 200
    assert post("repo/stat").json()["NumObjects"] == 0


def _cbor_linking(child: CID) -> tuple[CID, bytes]:
    """{"link": child} in DAG-CBOR, by hand (tag 42 over 0x00 + the binary CID)."""
    raw = b"\x00" + bytes(child)
    body = b"\xa1\x64link\xd8\x2a\x58" + bytes((len(raw),)) + raw
    return CID("base32", 1, "dag-cbor", multihash.digest(body, "sha2-256")), body


async def test_a_pin_made_before_is_uncounted_as_it_was_counted(tmp_path: Path) -> None:
    config = StoreConfig(max_size=10**7, memory_size=0)
    store = await TieredStore.open(tmp_path, config)
    leaf = raw_block(size=500)
    parent = _cbor_linking(leaf[0])
    folder = dagpb_block([(leaf[0], 500)])
    for cid, data in (leaf, parent, folder):
        await store.put(cid, data)
    await store.pin(folder[0])  # counts the leaf once
    await store.pin(parent[0])  # counts it again, through the DAG-CBOR link
    assert store.pin_type(leaf[0]) == "indirect"
    await store.close()
    # As an older version left it: the DAG-CBOR pin counted its root alone.
    db = sqlite3.connect(tmp_path / "datastore" / "index.sqlite")
    with db:
        db.execute("UPDATE pins SET created=-created WHERE cid=?", (str(parent[0]),))
        db.execute("UPDATE blocks SET pins=pins-1 WHERE key=?", (bytes(leaf[0].digest),))
    db.close()

    store = await TieredStore.open(tmp_path, config)
    await store.unpin(parent[0])  # must not take the folder pin's count of the leaf
    await store.gc(full=True)
    assert await store.get(leaf[0]) == leaf[1]
    await store.unpin(folder[0])
    await store.gc(full=True)
    assert len(store) == 0
    await store.close()


async def test_an_index_made_before_opens_with_its_pins_counted_as_before(tmp_path: Path
                                                                          ) -> None:
    """No ``lost`` table and pin times all positive: the table is added at open, its pins
    say walk 0."""
    config = StoreConfig(max_size=10**7, memory_size=0)
    store = await TieredStore.open(tmp_path, config)
    leaf = raw_block(size=500)
    parent = _cbor_linking(leaf[0])
    for cid, data in (leaf, parent):
        await store.put(cid, data)
    await store.pin(parent[0])
    await store.close()
    db = sqlite3.connect(tmp_path / "datastore" / "index.sqlite")
    with db:
        db.execute("UPDATE pins SET created=-created")  # its time, positive then
        db.execute("DROP TABLE lost")
        db.execute("UPDATE blocks SET pins=0 WHERE key=?", (bytes(leaf[0].digest),))
        db.execute("UPDATE counters SET pinned_blocks=pinned_blocks-1")
    db.close()

    store = await TieredStore.open(tmp_path, config)
    pin = store.pin_of(parent[0])
    assert pin is not None and pin.walk == 0 and store.pin_type(leaf[0]) is None
    await store.unpin(parent[0])
    assert store.stats().pinned_blocks == 0
    await store.gc(full=True)
    assert len(store) == 0
    await store.close()


async def test_an_index_made_before_opens_on_a_full_disk(tmp_path: Path) -> None:
    """A full disk at the first start after an upgrade: the table an older index lacks
    cannot be added (no page to write it), yet the store opens and serves its blocks and pins
    as a full disk's store does; the first write with space adds it."""
    config = StoreConfig(max_size=10**7, memory_size=0)
    with small_tmpfs(tmp_path / "disk", "2m") as disk:
        root = disk / "repo"
        store = await TieredStore.open(root, config)
        leaf = raw_block(size=500)
        await store.put(*leaf)
        await store.pin(leaf[0])
        await store.close()
        db = sqlite3.connect(root / "datastore" / "index.sqlite")
        with db:
            db.execute("UPDATE pins SET created=-created")  # its time, positive then
            db.execute("DROP TABLE lost")
        db.execute("VACUUM")
        db.close()
        filler = disk / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        finally:
            os.close(fd)

        store = await TieredStore.open(root, config)  # said: no such table: lost
        try:
            assert await store.get(leaf[0]) == leaf[1]
            assert store.pins() == {str(leaf[0]): "recursive"}
            assert store.pin_type(leaf[0]) == "recursive"
            assert [c async for c in store.iter_indirect()] == []
            with pytest.raises(StoreFullError):
                await store.unpin(leaf[0])
            assert store.is_pinned(leaf[0])
        finally:
            filler.unlink()  # space back: the first write migrates
            await store.close()
        store = await TieredStore.open(root, config)
        pin = store.pin_of(leaf[0])
        assert pin is not None and pin.walk == 0
        await store.unpin(leaf[0])
        assert store.pins() == {}
        await store.close()


async def test_an_older_daemon_can_still_pin_in_this_index(tmp_path: Path) -> None:
    """A daemon rolled back to the version before: its pin rows are five values (cid, key,
    mode, name, created). They fit this index, and this version reads them as walked through
    dag-pb links only, as that daemon counted them."""
    config = StoreConfig(max_size=10**7, memory_size=0)
    store = await TieredStore.open(tmp_path, config)
    leaf = raw_block(size=500)
    parent = _cbor_linking(leaf[0])
    for cid, data in (leaf, parent):
        await store.put(cid, data)
    await store.pin(parent[0])
    assert store.pin_type(leaf[0]) == "indirect"
    await store.close()
    db = sqlite3.connect(tmp_path / "datastore" / "index.sqlite")
    with db:  # the older daemon re-pins it: its add_pin's statement, counting the root only
        db.execute("UPDATE blocks SET pins=0 WHERE key=?", (bytes(leaf[0].digest),))
        db.execute("UPDATE counters SET pinned_blocks=pinned_blocks-1")
        db.execute("INSERT OR REPLACE INTO pins VALUES (?, ?, ?, ?, ?)",
                   (str(parent[0]), bytes(parent[0].digest), "recursive", "", 1.0e9))
    db.close()

    store = await TieredStore.open(tmp_path, config)
    pin = store.pin_of(parent[0])
    assert pin is not None and pin.walk == 0
    await store.pin(leaf[0], recursive=False)  # the leaf's own pin, counted once
    await store.unpin(parent[0])
    assert store.pin_type(leaf[0]) == "direct" and store.is_pinned(leaf[0])
    await store.close()


async def test_a_walk_column_becomes_the_times_sign(tmp_path: Path) -> None:
    """An index this version made in its first form (a ``walk`` column, which an older
    daemon's five-value pin rows no longer fit): the walk moves into the time's sign and the
    column goes."""
    config = StoreConfig(max_size=10**7, memory_size=0)
    store = await TieredStore.open(tmp_path, config)
    leaf = raw_block(size=500)
    await store.put(*leaf)
    await store.pin(leaf[0])
    await store.close()
    path = tmp_path / "datastore" / "index.sqlite"
    db = sqlite3.connect(path)
    with db:
        db.execute("ALTER TABLE pins ADD COLUMN walk INTEGER NOT NULL DEFAULT 0")
        db.execute("UPDATE pins SET walk=1, created=-created")
    db.close()

    store = await TieredStore.open(tmp_path, config)
    pin = store.pin_of(leaf[0])
    assert pin is not None and pin.walk == 1
    await store.close()
    db = sqlite3.connect(path)
    assert "walk" not in {r[1] for r in db.execute("PRAGMA table_info(pins)")}
    db.close()


async def test_a_block_an_older_daemon_stored_again_keeps_its_lost_count(tmp_path: Path
                                                                         ) -> None:
    """A pinned block dropped (its bytes found bad: its count kept in ``lost``), then stored
    again by a daemon rolled back to the version before, which knows no ``lost`` table: its
    row says 0 pins. The next open gives the row its count back, so GC keeps the block."""
    config = StoreConfig(max_size=10**7, memory_size=0)
    store = await TieredStore.open(tmp_path, config)
    leaf = raw_block(size=500)
    folder = dagpb_block([(leaf[0], 500)])
    for cid, data in (leaf, folder):
        await store.put(cid, data)
    await store.pin(folder[0])
    await store._drop([bytes(leaf[0].digest)])  # as a read that found its bytes bad
    assert store.is_pinned(leaf[0]) and not await store.has(leaf[0])
    await store.close()
    path = tmp_path / "datastore" / "index.sqlite"
    db = sqlite3.connect(path)
    with db:  # the older daemon's put: a row with no pins, lost left as it was
        lost = db.execute("SELECT * FROM lost").fetchall()
        db.execute("DELETE FROM lost")
    db.close()
    store = await TieredStore.open(tmp_path, config)
    await store.put(*leaf)
    await store.close()
    db = sqlite3.connect(path)
    with db:
        db.executemany("INSERT INTO lost VALUES (?, ?, ?)", lost)
    db.close()

    store = await TieredStore.open(tmp_path, config)
    assert store.is_pinned(leaf[0]) and store.stats().pinned_blocks == 2
    await store.gc(full=True)
    assert await store.get(leaf[0]) == leaf[1]  # was collected: its row said no pin
    assert [c async for c in store.iter_indirect()] == [str(leaf[0])]
    await store.unpin(folder[0])
    await store.gc(full=True)
    assert len(store) == 0
    await store.close()
