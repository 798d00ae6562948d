"""A real ENOSPC: the store on a 2 MiB tmpfs, with max_size far above what the disk holds.

Running out of disk must surface as StoreFullError (never a bare OSError), leave the index equal
to the files on disk with no temp files, and the store must recover once blocks are deleted.
Needs root (mount); skipped where mounting a tmpfs is not allowed.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from blockfiles import blocks_on_disk
from dag import raw_block
from helpers import small_tmpfs
from multiformats import CID

from ipfs_kit_node.storage import StoreConfig, StoreFullError, TieredStore

CONFIG = StoreConfig(max_size=10**9, memory_size=64 * 1024, sync=True)
BLOCK = 100 * 1024
PAGE = 4096
SMALL = 64  # distinct random blocks that take one page each


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs mounted on a fresh folder; always unmounted afterwards."""
    with small_tmpfs(tmp_path / "disk", "2m") as mnt:
        yield mnt


def files_on_disk(root: Path) -> set[bytes]:
    return blocks_on_disk(root)  # block files and pack records (no GC runs here)


def no_tmp_files(root: Path) -> bool:
    return not any((root / "blocks" / ".tmp").iterdir())


async def assert_consistent(store: TieredStore, root: Path) -> None:
    assert {bytes(c.digest) async for c in store} == files_on_disk(root), (
        "the index and the block files on disk disagree"
    )
    assert no_tmp_files(root), "temp files left in blocks/.tmp"


def assert_disk_full_error(exc: StoreFullError) -> None:
    assert "is full" in str(exc)
    assert isinstance(exc.__cause__, OSError) and exc.__cause__.errno == errno.ENOSPC


async def fill(
    store: TieredStore, root: Path, size: int, stored: dict[CID, bytes]
) -> tuple[CID, bytes]:
    """Put blocks of ``size`` until the disk is full; the block that did not fit."""
    for _ in range(2 * 2**20 // size + 10):
        cid, data = raw_block(size=size)
        try:
            await store.put(cid, data)
        except StoreFullError as exc:
            assert_disk_full_error(exc)
            return cid, data
        except OSError as exc:
            pytest.fail(
                f"put on a full disk raised {exc!r}, not StoreFullError "
                f"(block on disk: {bytes(cid.digest) in files_on_disk(root)})"
            )
        stored[cid] = data
    pytest.fail(f"{size}-byte puts never filled the 2 MiB disk")


async def test_enospc_is_store_full_and_the_store_recovers(small_disk: Path) -> None:
    root = small_disk
    store = await TieredStore.open(root, CONFIG)
    stored: dict[CID, bytes] = {}
    failed, failed_data = await fill(store, root, BLOCK, stored)
    assert 10 <= len(stored) < 21  # 2 MiB holds at most 20 blocks of 100 KiB

    # Everything acknowledged is intact; the failed block left no trace.
    for cid, data in stored.items():
        assert await store.get(cid) == data
    assert not await store.has(failed)
    assert bytes(failed.digest) not in files_on_disk(root)
    await assert_consistent(store, root)
    assert len(store) == len(stored)

    # Freeing space makes room again: the refused block now fits.
    for cid in list(stored)[:3]:
        assert await store.delete(cid)
        del stored[cid]
    assert await store.put(failed, failed_data)
    stored[failed] = failed_data
    assert await store.get(failed) == failed_data
    await assert_consistent(store, root)

    await store.close()  # the snapshot fits in the space the deletes freed
    assert (root / "datastore" / "CLEAN").exists()
    assert not (root / "datastore" / "index.parquet.tmp").exists()

    store = await TieredStore.open(root, CONFIG)  # clean restart, from the snapshot
    assert len(store) == len(stored)
    for cid, data in stored.items():
        assert await store.get(cid) == data
    await assert_consistent(store, root)
    await store.close()


def free_pages(root: Path) -> int:
    st = os.statvfs(root)
    return st.f_bavail * st.f_frsize // PAGE


def fill_with_filler(root: Path) -> Path:
    """A file that takes every free page of the disk; remove it to give the space back."""
    filler = root / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            try:
                os.write(fd, b"\0" * PAGE)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
    finally:
        os.close(fd)
    assert free_pages(root) == 0
    return filler


def assert_says_what_to_do(exc: StoreFullError) -> None:
    text = str(exc)
    assert "is full" in text and "free space" in text, text
    assert "\n" not in text


async def test_store_on_a_full_disk_reads_refuses_writes_and_recovers(small_disk: Path) -> None:
    """A daemon restarted on a full disk: the store opens, serves every block, refuses puts
    and pins with an error saying what to do (changing nothing), and works again once space
    is freed, without a restart."""
    root = small_disk / "repo"
    store = await TieredStore.open(root, CONFIG)
    stored: dict[CID, bytes] = {}
    for _ in range(5):
        cid, data = raw_block(size=BLOCK)
        await store.put(cid, data)
        stored[cid] = data
    await store.close()
    filler = fill_with_filler(small_disk)

    store = await TieredStore.open(root, CONFIG)
    for cid, data in stored.items():
        assert await store.get(cid) == data
    cid, data = raw_block(size=BLOCK)
    with pytest.raises(StoreFullError) as put_error:
        await store.put(cid, data)
    assert_says_what_to_do(put_error.value)
    assert not await store.has(cid)
    pinned = next(iter(stored))
    with pytest.raises(StoreFullError) as pin_error:
        await store.pin(pinned, recursive=False)
    assert_says_what_to_do(pin_error.value)
    assert store.pins() == {} and not store.is_pinned(pinned)
    assert not (root / "datastore" / "pins.json.tmp").exists()
    assert (await store.verify()).ok
    await assert_consistent(store, root)

    filler.unlink()  # space is back: the same calls succeed
    assert await store.put(cid, data)
    stored[cid] = data
    await store.pin(pinned, recursive=False)
    assert store.is_pinned(pinned)
    await store.close()
    store = await TieredStore.open(root, CONFIG)
    assert store.pins() == {str(pinned): "direct"}
    for cid, data in stored.items():
        assert await store.get(cid) == data
    await store.close()


async def test_unpin_on_a_full_disk_changes_nothing(small_disk: Path) -> None:
    root = small_disk / "repo"
    store = await TieredStore.open(root, CONFIG)
    cid, data = raw_block(size=BLOCK)
    await store.put(cid, data)
    await store.pin(cid, recursive=False)
    filler = fill_with_filler(small_disk)
    with pytest.raises(StoreFullError) as exc:
        await store.unpin(cid)
    assert_says_what_to_do(exc.value)
    assert store.pins() == {str(cid): "direct"} and store.is_pinned(cid)
    filler.unlink()
    await store.unpin(cid)
    assert store.pins() == {} and not store.is_pinned(cid)
    await store.close()


def test_daemon_start_on_a_full_disk_is_one_line_exit_2(small_disk: Path) -> None:
    """Writing the PID into repo.lock is the first write of a start: on a full disk it is the
    one-line error of every start failure, exit 2, never a traceback."""
    from helpers import run_cli

    from ipfs_kit_node.repo import Repo

    repo = Repo(small_disk / "repo")
    repo.init()
    repo.load_or_create_identity()
    repo.lock()
    repo.unlock()  # leaves repo.lock empty: writing the PID needs a new page
    fill_with_filler(small_disk)
    out = run_cli("--repo", str(repo.path), "daemon", timeout=60)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), out.stderr
    assert "repo.lock" in lines[0] and "is full" in lines[0] and "free some space" in lines[0]
