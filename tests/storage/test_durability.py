"""What a crash may rely on, and eviction against concurrent puts and reads of one block.

Ordering tests record the file system calls the store makes (``os.fsync``, ``os.replace``) and
check that each record recovery needs is fsynced before the action it describes, and that every
rename is followed by an fsync of its folder. Race tests interleave trio tasks deterministically:
a test double of the remote tier and hooks on the disk tier hold one task at a chosen await
while the other runs.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from dag import raw_block
from multiformats import CID

from ipfs_kit_node.journal import RecordLog, atomic_write
from ipfs_kit_node.repo import Repo
from ipfs_kit_node.storage import StoreConfig, TieredStore
from ipfs_kit_node.storage.blockdb import BlockDB
from ipfs_kit_node.storage.index import export_parquet

CONFIG = StoreConfig(max_size=100_000, memory_size=0, gc_watermark=0.5, parquet_export=False)
FILES = dataclasses.replace(CONFIG, pack_threshold=0)  # one file a block: races on its unlink


class Remote:
    """The remote tier holding everything; ``gate`` (if set) holds ``is_safely_held``."""

    name = "test"

    def __init__(self) -> None:
        self.held: dict[str, bytes] = {}
        self.gate: trio.Event | None = None
        self.asked = trio.Event()

    async def is_safely_held(self, cid: CID) -> bool:
        self.asked.set()
        if self.gate is not None:
            await self.gate.wait()
        return str(cid) in self.held

    async def fetch(self, cid: CID) -> bytes | None:
        return self.held.get(str(cid))


async def pinned_store(root: Path, remote: Remote, n: int = 8,
                       config: StoreConfig = CONFIG) -> tuple[TieredStore, list[tuple[CID, bytes]]]:
    """A store over its watermark with n pinned 10 kB blocks, all held remotely."""
    store = await TieredStore.open(root, config, remote=remote)
    blocks = [raw_block(size=10_000) for _ in range(n)]
    for cid, data in blocks:
        await store.put(cid, data)
        await store.pin(cid, recursive=False)
        remote.held[str(cid)] = data
    return store, blocks


# -- the order of durable steps --------------------------------------------------------------


@pytest.fixture
def fs_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str]]]:
    """Every os.fsync (by path), os.replace and os.unlink of this process, in order."""
    calls: list[tuple[str, str]] = []
    real_fsync, real_replace, real_unlink = os.fsync, os.replace, os.unlink

    def fsync(fd: int) -> None:
        real_fsync(fd)
        calls.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))

    def replace(src: str | Path, dst: str | Path, **kw: object) -> None:
        real_replace(src, dst, **kw)  # type: ignore[arg-type]
        calls.append(("replace", f"{src} -> {dst}"))

    def unlink(path: str | Path, **kw: object) -> None:
        real_unlink(path, **kw)  # type: ignore[arg-type]
        calls.append(("unlink", str(path)))

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "unlink", unlink)
    yield calls


def assert_renames_durable(calls: list[tuple[str, str]], target: Path) -> None:
    """The temp file fsynced before the rename onto ``target``, its folder fsynced after."""
    at = next(i for i, (op, arg) in enumerate(calls)
              if op == "replace" and arg.endswith(f" -> {target}"))
    tmp = calls[at][1].split(" -> ")[0]
    assert ("fsync", tmp) in calls[:at], f"{tmp} renamed onto {target} before being fsynced"
    assert ("fsync", str(target.parent)) in calls[at + 1:], (
        f"the folder of {target} was not fsynced after the rename: a crash may undo it"
    )


def test_every_atomic_replace_fsyncs_its_folder(tmp_path: Path,
                                                fs_calls: list[tuple[str, str]]) -> None:
    atomic_write(tmp_path / "plain", b"x")
    assert_renames_durable(fs_calls, tmp_path / "plain")

    BlockDB(tmp_path / "index.sqlite").close()
    export_parquet(tmp_path / "index.sqlite", tmp_path / "index.parquet")
    assert_renames_durable(fs_calls, tmp_path / "index.parquet")

    log = RecordLog(tmp_path / "queue" / "log")
    log.rewrite([{"a": 1}])
    log.append([{"b": 2}])
    assert_renames_durable(fs_calls, tmp_path / "queue" / "log")
    assert ("fsync", str(tmp_path)) in fs_calls, "the new queue folder is not durable"
    assert fs_calls[-1] == ("fsync", str(tmp_path / "queue" / "log"))
    log.close()

    repo = Repo(tmp_path / "repo")
    repo.init()
    repo.load_or_create_identity()
    assert_renames_durable(fs_calls, repo.identity_file)
    assert_renames_durable(fs_calls, repo.config_file)
    assert ("fsync", str(tmp_path)) in fs_calls


async def test_eviction_and_put_of_one_block_never_race(tmp_path: Path) -> None:
    """Eviction of X is deleting X's file (in a worker thread) when a put of X arrives: the
    put must wait, then store X again; never may the eviction delete the put's new file."""
    remote = Remote()
    store, blocks = await pinned_store(tmp_path, remote, config=FILES)
    disk = store._disk
    real_delete, real_write = disk.delete, disk.write
    deleting, release = threading.Event(), threading.Event()
    written = threading.Event()
    victim: list[bytes] = []

    def slow_delete(key: bytes) -> bool:
        victim.append(key)
        deleting.set()
        assert release.wait(20)
        return real_delete(key)

    def write(key: bytes, data: bytes | memoryview) -> None:
        real_write(key, data)
        written.set()

    disk.delete, disk.write = slow_delete, write  # type: ignore[method-assign]
    by_key = {bytes(c.digest): (c, d) for c, d in blocks}
    stored: list[bool] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(store.gc)
        await trio.to_thread.run_sync(deleting.wait, 20)
        cid, data = by_key[victim[0]]
        assert store.is_remote(cid)
        nursery.start_soon(lambda: _append(stored, store.put(cid, data)))
        await trio.testing.wait_all_tasks_blocked()
        # Were the put not held back, its write would land now, before the delete.
        try:
            landed = await trio.to_thread.run_sync(written.wait, 0.5)
            assert not landed, "a put of a block wrote its file while eviction deleted it"
        finally:
            release.set()
    assert stored == [True]
    assert store.is_local(cid) and not store.is_remote(cid)
    assert disk.path_for(victim[0]).exists(), "eviction deleted the file the put just wrote"
    assert await store.get(cid) == data
    assert (await store.verify()).ok
    await store.close()


async def test_read_during_eviction_falls_back_to_remote(tmp_path: Path) -> None:
    """A get that found X on disk, then lost its file to eviction, fetches X remotely; it
    must not conclude X vanished (which would forget a pinned block)."""
    remote = Remote()
    store, blocks = await pinned_store(tmp_path, remote, config=FILES)
    disk = store._disk
    real_read = disk.read_verified
    reading, go = threading.Event(), threading.Event()

    def held_read(key: bytes) -> tuple[bytes | None, bool]:
        reading.set()
        assert go.wait(20)
        return real_read(key)

    target = blocks[3]  # the only block the remote holds: the only one eviction may pick
    remote.held = {str(target[0]): target[1]}
    got: list[bytes] = []
    disk.read_verified = held_read  # type: ignore[method-assign]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: _append(got, store.get(target[0])))
        try:
            await trio.to_thread.run_sync(reading.wait, 20)
            disk.read_verified = real_read  # type: ignore[method-assign]
            result = await store.gc()
            assert result.evicted_to_remote == 1 and store.is_remote(target[0]), result
        finally:
            go.set()
    assert got == [target[1]]
    assert store.is_pinned(target[0]) and store.is_remote(target[0])
    assert (await store.verify()).ok
    await store.close()


async def test_block_unpinned_while_eviction_asks_the_remote_stays(tmp_path: Path) -> None:
    remote = Remote()
    store, blocks = await pinned_store(tmp_path, remote)
    remote.gate = trio.Event()
    results: list[Any] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: _append(results, store.gc()))
        await remote.asked.wait()
        for cid, _ in blocks:
            await store.unpin(cid)
        remote.gate.set()
    assert results[0].evicted_to_remote == 0
    assert store.stats().remote.blocks == 0
    await store.close()


async def _append(results: list[Any], coro: object) -> None:
    results.append(await coro)  # type: ignore[misc]




@pytest.mark.parametrize("sync", [True, False])
async def test_index_commits_are_fsynced_when_storage_sync_is_on(tmp_path: Path,
                                                                 sync: bool) -> None:
    """``[storage] sync`` keeps its promise for the SQLite index too: in WAL mode only
    synchronous=FULL (2) fsyncs the WAL at each commit; sync off runs NORMAL (1)."""
    config = StoreConfig(max_size=10**9, memory_size=0, parquet_export=False, sync=sync)
    store = await TieredStore.open(tmp_path, config)
    try:
        db = store._db
        for conn in (db._wr, db._rd):
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db._wr.execute("PRAGMA synchronous").fetchone()[0] == (2 if sync else 1)
        cid, data = raw_block(size=100)
        await store.put(cid, data)
        await store.pin(cid, recursive=False)
        # Still the setting after write transactions (set_remote raises it for one commit).
        assert db._wr.execute("PRAGMA synchronous").fetchone()[0] == (2 if sync else 1)
    finally:
        await store.close()
