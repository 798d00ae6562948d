"""What the store keeps on disk, read without the store: block files and pack records.

Tests compare it with the index (every block indexed is on disk, nothing on disk is stray)
and damage blocks where they lie (a block file, or a record inside a pack).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from ipfs_kit_node.storage.disk import DiskTier
from ipfs_kit_node.storage.packs import PACKS_DIR, PackFiles


def _packs(root: Path) -> PackFiles | None:
    folder = root / "blocks" / PACKS_DIR
    return PackFiles(folder, sync=False) if folder.is_dir() else None


def blocks_on_disk(root: Path) -> set[bytes]:
    """Keys of every block file and every valid pack record (a deleted block's record is
    punched out, where the filesystem can; else it stays until compaction)."""
    keys = {key for key, _ in DiskTier(root / "blocks").scan()}
    packs = _packs(root)
    if packs is not None:
        for pack in packs.ids():
            keys.update(r.key for r in packs.scan(pack, resync=True)[0])
    return keys


def pack_files(root: Path) -> list[Path]:
    packs = _packs(root)
    return [] if packs is None else [packs.path(p) for p in packs.ids()]


def damage_block(root: Path, key: bytes, junk: bytes = b"bit rot") -> Path:
    """Overwrite the start of a block's bytes with ``junk`` where they lie (its file, or
    its record's data in a pack); the path changed."""
    path = DiskTier(root / "blocks").path_for(key)
    if path.exists():
        path.write_bytes(junk)
        return path
    packs = _packs(root)
    assert packs is not None, "block not on disk"
    for pack in packs.ids():
        for record in packs.scan(pack, resync=True)[0]:
            if record.key == key:
                assert record.size, "an empty block has no bytes to damage"
                fd = os.open(packs.path(pack), os.O_WRONLY)
                try:
                    os.pwrite(fd, junk[:record.size], record.off)
                finally:
                    os.close(fd)
                return packs.path(pack)
    raise AssertionError("block not on disk")


def assert_matches_index(root: Path, local: set[bytes]) -> None:
    """The disk holds exactly the local blocks of the index: every block file is indexed,
    every indexed block is a file or a valid pack record where its row says, and no pack
    holds bytes past its committed end (records appended but never indexed). Dead records
    of deleted blocks before that end are allowed (compaction's business)."""
    import sqlite3

    files = {key for key, _ in DiskTier(root / "blocks").scan()}
    assert files <= local, f"{len(files - local)} block files not in the index"
    conn = sqlite3.connect(f"file:{root / 'datastore' / 'index.sqlite'}?mode=ro", uri=True)
    try:
        rows = {bytes(k): (p, o) for k, p, o in conn.execute(
            "SELECT key, pack, off FROM blocks WHERE remote=0 AND pack IS NOT NULL")}
        ends = dict(conn.execute("SELECT id, end FROM packs WHERE end >= 0").fetchall())
    finally:
        conn.close()
    packs = _packs(root)
    records: dict[tuple[int, int], bytes] = {}
    for pack in [] if packs is None else packs.ids():
        assert packs is not None
        size = os.stat(packs.path(pack)).st_size
        assert size == ends.get(pack, 0), f"pack {pack}: {size} bytes, {ends.get(pack)} indexed"
        records.update(((pack, r.off), r.key) for r in packs.scan(pack, resync=True)[0])
    for key, place in rows.items():
        assert records.get(place) == key, f"no valid record where the index puts {key.hex()}"
    assert local == files | set(rows), "the index and the disk disagree"


def child_stopped_at(child: Path, repo: Path, point: str, log: Path) -> list[str]:
    """Run ``child`` (storage/compact_child.py) on ``repo`` until it prints ``AT point``,
    then SIGKILL it; the CIDs it pinned. A child that never gets there fails the test."""
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(child), str(repo), point],
                                stdout=subprocess.PIPE, stderr=out, text=True)
    watchdog = threading.Timer(60, proc.kill)  # a hung child fails instead of hanging
    watchdog.start()
    pins: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("PIN "):
                pins.append(line.split()[1])
            elif line.strip() == f"AT {point}":
                return pins
            elif line.startswith("GC DONE"):
                break
        raise AssertionError(f"the child never stopped at {point}: "
                             f"{log.read_text()[-2000:]}")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        watchdog.cancel()
