"""TieredStore on real files: puts, verification, pins, GC, restarts, corruption, remote tier."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import trio
from blockfiles import blocks_on_disk, damage_block
from dag import dagpb_block, raw_block
from multiformats import CID, multihash

from ipfs_kit_node.storage import (
    BlockNotFoundError,
    HashMismatchError,
    PinnedBlockError,
    StoreConfig,
    StoreError,
    StoreFullError,
    TieredStore,
)
from ipfs_kit_node.storage.blocks import key_of
from ipfs_kit_node.storage.disk import DiskTier

CONFIG = StoreConfig(max_size=10**7, memory_size=10**5, gc_watermark=0.5)
FILES = dataclasses.replace(CONFIG, pack_threshold=0)  # one file a block, as before packs


async def test_parquet_export_matches_the_index(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    store = await open_store(tmp_path)
    blocks = [raw_block(size=100 + i) for i in range(5)]
    for cid, data in blocks:
        await store.put(cid, data)
    await store.pin(blocks[0][0], recursive=False)
    await store.snapshot()
    table = pq.read_table(store.parquet_path)
    rows = {r["cid"]: r for r in table.to_pylist()}
    assert set(rows) == {str(c) for c, _ in blocks}
    assert rows[str(blocks[0][0])]["pinned"] and not rows[str(blocks[1][0])]["pinned"]
    assert rows[str(blocks[3][0])]["size"] == 103
    assert {r["pack"] for r in rows.values()} == {1}  # small blocks: all in the first pack
    assert table.schema.metadata[b"ipfs_kit_node.half_life"] == b"3600.0"
    await store.close()


async def open_store(root: Path, config: StoreConfig = CONFIG, **kw: object) -> TieredStore:
    return await TieredStore.open(root, config, **kw)  # type: ignore[arg-type]


def files_on_disk(root: Path) -> set[bytes]:
    return blocks_on_disk(root)  # block files and pack records


def no_tmp_files(root: Path) -> bool:
    return not any((root / "blocks" / ".tmp").iterdir())


async def test_put_get_has_iterate(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    blocks = [raw_block(size=s) for s in (0, 1, 1000, 300_000)]
    for cid, data in blocks:
        assert await store.put(cid, data)
        assert not await store.put(cid, data)  # already there
    for cid, data in blocks:
        assert await store.has(cid)
        assert await store.get(cid) == data
    assert {str(c) async for c in store} == {str(c) for c, _ in blocks}
    assert not await store.has(raw_block(size=10)[0])
    with pytest.raises(BlockNotFoundError, match="not found"):
        await store.get(raw_block(size=10)[0])
    await store.close()


async def test_cidv0_and_v1_of_the_same_bytes_are_one_block(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    v0, body = dagpb_block([], version=0)
    v1 = CID("base32", 1, "dag-pb", v0.digest)
    raw = CID("base32", 1, "raw", v0.digest)
    assert await store.put(v0, body)
    assert not await store.put(v1, body)
    assert await store.get(raw) == body and len(store) == 1
    await store.close()


async def test_wrong_bytes_are_refused_and_nothing_stored(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    cid, _ = raw_block(size=100)
    with pytest.raises(HashMismatchError, match=str(cid)):
        await store.put(cid, b"not these bytes")
    assert not await store.has(cid) and len(store) == 0
    assert not files_on_disk(tmp_path) and no_tmp_files(tmp_path)
    with pytest.raises(StoreError, match="is not a CID"):
        await store.put("bafy-nope", b"x")
    await store.close()


async def test_corrupt_file_is_quarantined_and_reported_missing(tmp_path: Path) -> None:
    config = StoreConfig(max_size=10**7, memory_size=0)  # every read goes to disk
    store = await open_store(tmp_path, config)
    cid, data = raw_block(size=5000)
    await store.put(cid, data)
    name = DiskTier(tmp_path / "blocks").path_for(bytes(cid.digest)).name
    path = damage_block(tmp_path, bytes(cid.digest), b"flipped")  # a pack record here
    with pytest.raises(BlockNotFoundError):
        await store.get(cid)
    assert not await store.has(cid)
    assert (tmp_path / "blocks" / ".quarantine" / name).exists()
    assert path.suffix == ".pack"
    # A good copy can be stored again.
    await store.put(cid, data)
    assert await store.get(cid) == data
    await store.close()


async def test_verify_rehashes_everything(tmp_path: Path) -> None:
    store = await open_store(tmp_path, StoreConfig(max_size=10**7, memory_size=0))
    good = [raw_block(size=100) for _ in range(5)]
    for cid, data in good:
        await store.put(cid, data)
    bad_cid = good[2][0]
    damage_block(tmp_path, bytes(bad_cid.digest), b"junk")
    result = await store.verify()
    assert result.checked == 5 and result.corrupt == [str(bad_cid)] and not result.ok
    assert len(store) == 4
    await store.close()


async def test_restart_keeps_index_heat_and_pins(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    cid, data = raw_block(size=100)
    await store.put(cid, data)
    for _ in range(5):
        await store.get(cid)
    await store.pin(cid, recursive=False)
    heat = store.heat(cid)
    await store.close()
    assert (tmp_path / "datastore" / "CLEAN").exists()

    store = await open_store(tmp_path)
    assert store.heat(cid) == pytest.approx(heat)
    assert store.pins() == {str(cid): "direct"} and store.is_pinned(cid)
    assert await store.get(cid) == data
    meta = store._meta(bytes(cid.digest))
    assert meta is not None and meta.access_count >= 7
    await store.close()


async def test_damaged_index_is_rebuilt_from_disk(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    blocks = [raw_block(size=200) for _ in range(10)]
    for cid, data in blocks:
        await store.put(cid, data)
    await store.close()
    (tmp_path / "datastore" / "index.sqlite").write_bytes(b"\x93garbage" * 1000)
    store = await open_store(tmp_path)
    assert len(store) == 10
    for cid, data in blocks:
        assert await store.get(cid) == data
    await store.close()


async def test_unclean_start_reconciles_with_disk(tmp_path: Path) -> None:
    store = await open_store(tmp_path, FILES)
    kept = [raw_block(size=200) for _ in range(4)]
    for cid, data in kept:
        await store.put(cid, data)
    await store.snapshot()
    # Simulate a crash: no close(); a stray temp file; a block file gone behind our back.
    (tmp_path / "blocks" / ".tmp" / "half-written.data.1.2").write_bytes(b"partial")
    DiskTier(tmp_path / "blocks").delete(bytes(kept[0][0].digest))
    assert not (tmp_path / "datastore" / "CLEAN").exists()
    store2 = await open_store(tmp_path, FILES)
    assert no_tmp_files(tmp_path)
    await store2.reconcile()  # the daemon runs it in the background after an unclean stop
    assert len(store2) == 3 and not await store2.has(kept[0][0])
    assert {bytes(c.digest) for c in [x async for x in store2]} == files_on_disk(tmp_path)
    await store2.close()


async def test_recursive_pin_survives_full_gc(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    leaves = [raw_block(size=300) for _ in range(3)]
    for cid, data in leaves:
        await store.put(cid, data)
    inner, inner_body = dagpb_block([(c, 300) for c, _ in leaves[:2]])
    root, root_body = dagpb_block([(inner, 700), (leaves[2][0], 300)], version=0)
    await store.put(inner, inner_body)
    await store.put(root, root_body)
    loose = raw_block(size=300)
    await store.put(*loose)

    await store.pin(root)
    assert store.stats().pinned_blocks == 5
    with pytest.raises(PinnedBlockError):
        await store.delete(leaves[0][0])
    result = await store.gc(full=True)
    assert result.removed == 1 and not await store.has(loose[0])
    assert all([await store.has(c) for c, _ in leaves])

    await store.unpin(root)
    assert store.stats().pinned_blocks == 0
    await store.gc(full=True)
    assert len(store) == 0 and not files_on_disk(tmp_path)
    with pytest.raises(StoreError, match="not pinned"):
        await store.unpin(root)
    await store.close()


async def test_pinning_an_incomplete_dag_names_the_missing_block(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    missing, _ = raw_block(size=10)
    root, body = dagpb_block([(missing, 10)])
    await store.put(root, body)
    with pytest.raises(BlockNotFoundError, match=str(missing)):
        await store.pin(root)
    assert store.pins() == {}
    await store.close()


async def test_gc_removes_coldest_first_down_to_watermark(tmp_path: Path) -> None:
    config = StoreConfig(max_size=100_000, memory_size=0, gc_watermark=0.5)
    store = await open_store(tmp_path, config)
    blocks = [raw_block(size=10_000) for _ in range(8)]
    for cid, data in blocks:
        await store.put(cid, data)
    for cid, _ in blocks[:3]:  # make three hot
        for _ in range(10):
            await store.get(cid)
    result = await store.gc()
    assert store.stats().disk.bytes <= 50_000 and result.removed == 3
    assert all([await store.has(c) for c, _ in blocks[:3]])
    await store.close()


async def test_put_beyond_max_size_collects_then_refuses(tmp_path: Path) -> None:
    config = StoreConfig(max_size=50_000, memory_size=0, gc_watermark=0.8)
    store = await open_store(tmp_path, config)
    first = [raw_block(size=10_000) for _ in range(5)]
    for cid, data in first:
        await store.put(cid, data)
    # Unpinned blocks make room on their own.
    await store.put(*raw_block(size=10_000))
    assert store.stats().disk.bytes <= 50_000
    async for cid in store:
        await store.pin(cid, recursive=False)
    with pytest.raises(StoreFullError, match="store full"):
        await store.put(*raw_block(size=10_000))
    assert store.stats().disk.bytes <= 50_000 and no_tmp_files(tmp_path)
    await store.close()


class FakeCluster:
    """Test double of the remote tier (the real ones are Kubo/Cluster drivers)."""

    name = "fake"

    def __init__(self) -> None:
        self.held: dict[str, bytes] = {}

    async def is_safely_held(self, cid: CID) -> bool:
        return str(cid) in self.held

    async def fetch(self, cid: CID) -> bytes | None:
        return self.held.get(str(cid))


async def test_pinned_blocks_leave_disk_only_when_held_remotely(tmp_path: Path) -> None:
    remote = FakeCluster()
    config = StoreConfig(max_size=100_000, memory_size=0, gc_watermark=0.5)
    store = await open_store(tmp_path, config, remote=remote)
    blocks = [raw_block(size=10_000) for _ in range(8)]
    for cid, data in blocks:
        await store.put(cid, data)
        await store.pin(cid, recursive=False)
    for cid, data in blocks[:4]:
        remote.held[str(cid)] = data
    result = await store.gc()
    assert result.evicted_to_remote == 3 and result.removed == 0
    stats = store.stats()
    assert stats.disk.bytes == 50_000 and stats.remote.blocks == 3
    evicted = [c for c, _ in blocks[:4] if not await store.has(c)]
    assert len(evicted) == 3
    # Read back through the remote tier, verified.
    data = dict((str(c), d) for c, d in blocks)
    assert await store.get(evicted[0]) == data[str(evicted[0])]
    remote.held[str(evicted[1])] = b"tampered"
    with pytest.raises(HashMismatchError):
        await store.get(evicted[1])
    await store.close()
    store = await open_store(tmp_path, config, remote=remote)
    assert store.stats().remote.blocks == 3
    await store.close()


async def test_a_kubo_style_gc_removes_every_unpinned_block_and_keeps_pins_local(
        tmp_path: Path) -> None:
    """gc(full=True, evict=False) as Kubo's RPC repo/gc runs it: all unpinned blocks go and
    are reported slice by slice; pinned ones stay on disk though the remote holds them."""
    remote = FakeCluster()
    config = StoreConfig(max_size=100_000, memory_size=0, gc_watermark=0.5)
    store = await open_store(tmp_path, config, remote=remote)
    pinned = [raw_block(size=10_000) for _ in range(3)]
    loose = [raw_block(size=10_000) for _ in range(4)]
    for cid, data in pinned + loose:
        await store.put(cid, data)
    for cid, data in pinned:
        await store.pin(cid, recursive=False)
        remote.held[str(cid)] = data
    slices: list[list[bytes]] = []
    result = await store.gc(full=True, evict=False, removed=slices.append)
    assert result.removed == 4 and result.evicted_to_remote == 0
    assert sorted(k for s in slices for k in s) == sorted(key_of(c) for c, _ in loose)
    assert store.stats().disk.bytes == 30_000 and store.stats().remote.blocks == 0
    for cid, _ in pinned:
        assert await store.has(cid)
    await store.close()


async def test_only_leaves_leave_so_pins_recount_offline(tmp_path: Path) -> None:
    """DAG nodes stay on disk: reopening walks pinned DAGs, and must not need the network."""
    remote = FakeCluster()
    config = StoreConfig(max_size=100_000, memory_size=0, gc_watermark=0.3)
    store = await open_store(tmp_path, config, remote=remote)
    leaves = [raw_block(size=10_000) for _ in range(6)]
    root, body = dagpb_block([(c, len(d)) for c, d in leaves])
    for cid, data in [*leaves, (root, body)]:
        await store.put(cid, data)
        remote.held[str(cid)] = data
    await store.pin(root)
    result = await store.gc()
    assert result.evicted_to_remote >= 3 and await store.has(root)
    await store.close()
    remote.held.clear()  # the remote is unreachable now
    store = await open_store(tmp_path, config, remote=remote)
    assert store.pins() == {str(root): "recursive"}
    await store.close()


async def test_concurrent_puts_of_one_block(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    cid, data = raw_block(size=50_000)
    results: list[bool] = []
    async with trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(lambda: _append(results, store.put(cid, data)))
    assert sorted(results) == [False] * 9 + [True]
    await store.close()


async def _append(results: list[bool], coro: object) -> None:
    results.append(await coro)  # type: ignore[misc]


async def test_oversized_block_refused(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    data = os.urandom(4 * 1024 * 1024 + 1)
    cid, _ = raw_block(data)
    with pytest.raises(StoreError, match="the limit is"):
        await store.put(cid, data)
    await store.close()


async def test_put_many_stores_a_key_another_put_claimed_then_failed(tmp_path: Path) -> None:
    """put_many waits on one key; meanwhile another put claims a key it already checked and
    fails: put_many must still store that key, not report it stored. The slow and failing
    disk writes are a monkeypatched DiskTier.write (no real disk fails on cue)."""
    import time

    store = await open_store(tmp_path, FILES)
    (a, a_data), (b, b_data), (c, c_data) = (raw_block(size=100 + i) for i in range(3))
    real_write = store._disk.write
    failed: list[bytes] = []

    def slow_write(key: bytes, data: bytes | memoryview) -> None:
        if bytes(data) == a_data:
            time.sleep(0.5)
        elif bytes(data) == b_data and not failed:
            failed.append(key)
            time.sleep(1.0)
            raise OSError(5, "Input/output error (simulated)")
        real_write(key, data)

    store._disk.write = slow_write  # type: ignore[method-assign]
    errors: list[BaseException] = []

    async def failing_put() -> None:
        try:
            await store.put(b, b_data)
        except Exception as exc:  # the simulated EIO, mapped or not
            errors.append(exc)

    stored: list[int] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(store.put, a, a_data)  # claims A, writes slowly
        await trio.sleep(0.1)
        nursery.start_soon(lambda: _append(stored, store.put_many(
            [(b, b_data), (a, a_data), (c, c_data)])))  # checks B, waits on A
        await trio.sleep(0.1)
        nursery.start_soon(failing_put)  # claims B meanwhile, then fails
    assert failed and len(errors) == 1 and isinstance(errors[0], StoreError)  # typed, not raw
    assert stored == [2]
    for cid, data in ((a, a_data), (b, b_data), (c, c_data)):
        assert await store.get(cid) == data
    await store.close()


_LOW_FD_SCRIPT = """
import resource, sys
from pathlib import Path
import trio
sys.path.insert(0, sys.argv[2])
from dag import raw_block
from ipfs_kit_node.storage import StoreConfig, TieredStore

resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

async def main() -> None:
    store = await TieredStore.open(Path(sys.argv[1]), StoreConfig(max_size=10**8))
    blocks = [raw_block(size=64 + i) for i in range(1024)]
    print("stored", await store.put_many(blocks))
    await store.close()

trio.run(main)
"""


def test_put_many_of_1024_blocks_under_a_256_fd_limit(tmp_path: Path) -> None:
    """A batch as large as an upload's (1,024 blocks) must fit a low open-files limit: the
    disk tier holds a bounded number of files open, not one per block (EMFILE otherwise)."""
    import subprocess
    import sys

    tests_dir = str(Path(__file__).parent.parent)
    result = subprocess.run([sys.executable, "-c", _LOW_FD_SCRIPT, str(tmp_path), tests_dir],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "stored 1024" in result.stdout.splitlines(), result.stdout[-2000:]


def test_daemon_start_raises_the_soft_fd_limit_to_the_hard_one() -> None:
    import subprocess
    import sys

    script = ("import resource\n"
              "from ipfs_kit_node.cli.daemon import _raise_fd_limit\n"
              "from ipfs_kit_node.logs import get_logger\n"
              "hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]\n"
              "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))\n"
              "_raise_fd_limit(get_logger('t'))\n"
              "print('raised', resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60)
    assert "raised True" in result.stdout.splitlines(), result.stderr[-2000:]


async def test_failed_fsync_after_rename_leaves_no_orphan_file(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    """A shard folder's fsync failing (EIO) after the rename: the put fails and the renamed
    file goes too (no row will ever name it). The failing fsync is monkeypatched in-process:
    no real disk fails on cue here."""
    import errno

    from ipfs_kit_node.storage import disk

    store = await open_store(tmp_path, FILES)
    real = disk.fsync_dir

    def failing_fsync_dir(path: Path) -> None:
        if Path(path).parent == tmp_path / "blocks":  # a shard folder, not the root
            raise OSError(errno.EIO, "Input/output error (simulated)")
        real(path)

    monkeypatch.setattr(disk, "fsync_dir", failing_fsync_dir)
    cid, data = raw_block(size=100)
    with pytest.raises(StoreError):
        await store.put(cid, data)
    with pytest.raises(StoreError):
        await store.put_many([raw_block(size=200 + i) for i in range(5)])
    assert files_on_disk(tmp_path) == set() and no_tmp_files(tmp_path)
    monkeypatch.setattr(disk, "fsync_dir", real)
    assert await store.put(cid, data) and await store.get(cid) == data
    await store.close()


async def test_pin_update_keeping_old_onto_a_direct_pin_leaks_no_count(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    leaf = raw_block(size=300)
    await store.put(*leaf)
    old, old_body = dagpb_block([(leaf[0], 300)])
    await store.put(old, old_body)
    new = raw_block(size=400)
    await store.put(*new)
    await store.pin(old)
    await store.pin(new[0], recursive=False)
    await store.update_pin(old, new[0], unpin=False)
    assert store.pins() == {str(old): "recursive", str(new[0]): "recursive"}
    await store.unpin(new[0])
    await store.unpin(old)
    assert store.stats().pinned_blocks == 0
    await store.gc(full=True)
    assert len(store) == 0
    await store.close()


async def test_a_hold_keeps_blocks_it_finds_from_gc(tmp_path: Path) -> None:
    """A pin fetch reads the blocks already here with get(): inside a hold, GC spares them
    until the hold ends, as it does the blocks the hold's task stores."""
    store = await open_store(tmp_path)
    found, stored = raw_block(size=300), raw_block(size=301)
    await store.put(*found)
    with store.hold():
        assert await store.get(found[0]) == found[1]
        await store.put(*stored)
        await store.gc(full=True)
        assert await store.has(found[0]) and await store.has(stored[0])
    await store.gc(full=True)
    assert len(store) == 0
    await store.close()


async def test_identity_cids_are_present_uncounted_and_walked(tmp_path: Path) -> None:
    """`add --inline` gives identity CIDs (the bytes are the CID's digest): never stored or
    counted, always present, as in Kubo. A pin over them used to fail ("block not found")."""
    store = await open_store(tmp_path)
    tiny = CID("base32", 1, "raw", multihash.get("identity").wrap(b"tiny"))
    leaf = raw_block(size=300)
    await store.put(*leaf)
    # An identity dag-pb node linking to a stored block: the walk goes through it.
    _, body = dagpb_block([(leaf[0], 300), (tiny, 4)])
    inner = CID("base32", 1, "dag-pb", multihash.get("identity").wrap(body))
    root, root_body = dagpb_block([(inner, 310), (tiny, 4)])
    await store.put(root, root_body)
    assert await store.get(tiny) == b"tiny" and await store.size(tiny) == 4
    assert await store.get_held(inner) == body
    assert [c async for c in store.dag_missing(root)] == []

    await store.pin(root)
    await store.pin(tiny, recursive=False)
    await store.pin(inner)
    assert store.pins() == {str(root): "recursive", str(tiny): "direct",
                            str(inner): "recursive"}
    assert store.stats().pinned_blocks == 2 and len(store) == 2  # root and leaf only
    assert store.pin_type(leaf[0]) == "indirect"
    assert await store.verify_pin(root) == [] and await store.verify_pin(inner) == []
    await store.gc(full=True)
    assert await store.has(leaf[0]) and await store.get(leaf[0]) == leaf[1]

    await store.unpin(root)
    await store.unpin(tiny)
    assert store.pin_type(leaf[0]) == "indirect"  # still under the identity root's pin
    await store.unpin(inner)
    assert store.stats().pinned_blocks == 0
    await store.gc(full=True)
    assert len(store) == 0 and await store.get(tiny) == b"tiny"
    await store.close()
