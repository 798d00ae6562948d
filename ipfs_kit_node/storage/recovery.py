"""Keeping the index true to the block files: at open (a damaged index moved aside and rebuilt,
an older repo's files and ``pins.json`` indexed, packs' unacknowledged or torn tails settled),
in the background after an unclean stop (``reconcile``), and on demand (``verify`` re-hashes
every local block).

Only a repo without an index (an older version's) is scanned whole at open; otherwise a start
after a clean stop or a kill -9 reads the index as it is and scans only the packs' tails past
their committed ends.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio
from multiformats import CID

from ..errors import StoreBusyError, StoreError
from ..journal import fsync_dir
from ..logs import get_logger
from .blockdb import BlockDB, BlockMeta, Row, storage_error
from .blocks import CidLike, cid_of_key
from .core import _take
from .index import remove_quietly
from .packs import Record
from .reads import ReadPath

log = get_logger(__name__)


@dataclass
class VerifyResult:
    checked: int = 0
    corrupt: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.corrupt and not self.missing


class Recovery(ReadPath):
    """Start-up recovery, reconcile and verify of ``TieredStore``."""

    if TYPE_CHECKING:  # TieredStore's (store.py): an older repo's pins are pinned again
        async def pin(self, cid: CidLike, recursive: bool = True, *, name: str = "",
                      links: Mapping[bytes, Sequence[CID]] | None = None) -> None: ...

    async def _load(self) -> None:
        clean = self._clean_marker.exists()
        # Durably gone before anything changes: a crash must never leave a marker that
        # vouches for a state this run no longer keeps.
        remove_quietly(self._clean_marker, durably=True)
        fresh = not self.db_path.exists()
        try:
            self._db_handle = await trio.to_thread.run_sync(self._open_db)
        except sqlite3.DatabaseError as exc:
            log.error("block index damaged; moved aside and rebuilt from the block files "
                      "(pins are lost: pin again)", path=str(self.db_path), error=str(exc))
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.replace(f"{self.db_path}{suffix}", f"{self.db_path}.damaged{suffix}")
            self._db_handle = await trio.to_thread.run_sync(self._open_db)
            fresh = True
        tmp_removed = await trio.to_thread.run_sync(self._disk.clean_tmp)
        if fresh and (any(self._disk.scan()) or self._packs.ids()
                      or (self._datastore / "pins.json").exists()):
            await self._migrate()
        await self._recover_packs()
        self._unclean = not clean and not fresh
        c = self._db.counters
        log.info("store opened", blocks=c.blocks, bytes=c.bytes, clean=clean, pins=c.pins,
                 tmp_removed=tmp_removed)

    def _open_db(self) -> BlockDB:
        try:
            return BlockDB(self.db_path, sync=self.config.sync)
        except sqlite3.OperationalError as exc:
            raise storage_error(exc, "cannot open the block index", self.root) from exc

    async def _migrate(self) -> None:
        """A repo without an index (older versions kept it in memory and pins.json): index
        the block files, then count the pins of ``pins.json``, walking each DAG once."""
        def scan() -> tuple[list[tuple[bytes, bytes, int, int | None, int]], dict[int, int]]:
            rows: list[tuple[bytes, bytes, int, int | None, int]] = [
                (k, bytes(cid_of_key(k)), s, None, 0) for k, s in self._disk.scan()]
            ends = {}
            for pack in self._packs.ids():
                records, end = self._packs.scan(pack, resync=True)
                if end < (self._packs.size(pack) or 0):
                    self._packs.truncate(pack, end)
                ends[pack] = end
                rows.extend((r.key, bytes(cid_of_key(r.key)), r.size, pack, r.off)
                            for r in records)
            return rows, ends

        rows, ends = await trio.to_thread.run_sync(scan)
        await self._write(self._db.rebuild, rows, time.time(), ends)
        legacy = self._datastore / "pins.json"
        if legacy.exists():
            import json

            try:
                roots = json.loads(legacy.read_text(encoding="utf-8"))["pins"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.error("old pins.json unreadable; its pins are not imported",
                          error=str(exc))
                roots = {}
            for text, mode in roots.items():
                try:
                    await self.pin(text, recursive=mode == "recursive")
                except StoreError as exc:
                    log.error("old pin not imported: its DAG is incomplete", cid=text,
                              error=str(exc))
            os.replace(legacy, legacy.with_name("pins.json.imported"))
        log.info("block index built from the block files and packs", blocks=len(rows),
                 packs=len(ends))

    async def _recover_packs(self) -> None:
        """Before any append. Records past a pack's committed end were appended but never
        acknowledged (a crash came before their rows): each whole and valid one is indexed
        (its copy is dead bytes if the block has a row already), and the pack is cut after
        the last of them, so a torn tail never sits before new records. A pack file the
        index does not know is either the newest, rolled just before a crash (recovered the
        same way), or one compaction emptied (removed, as are those marked emptied)."""
        known = self._db.packs()
        present = await trio.to_thread.run_sync(self._packs.ids)
        newest_known = max(known, default=0)
        gone = [p for p, (end, _) in known.items() if end < 0]
        for pack in present:
            end = known.get(pack, (0, 0))[0]
            if end < 0 or (pack not in known and pack < newest_known):
                await trio.to_thread.run_sync(self._packs.unlink, pack)
                gone.append(pack)
                continue
            size = self._packs.size(pack) or 0
            if size > end:
                records, valid = await trio.to_thread.run_sync(self._packs.scan, pack, end)
                if valid < size:
                    await trio.to_thread.run_sync(self._packs.truncate, pack, valid)
                    log.warning("torn tail of a pack cut (never acknowledged)", pack=pack,
                                bytes=size - valid)
                now = time.time()
                if records:
                    await self._write(self._db.add_missing, [
                        (r.key, bytes(cid_of_key(r.key)), r.size, now, pack, r.off)
                        for r in records])
                    log.info("unacknowledged records of a pack indexed", pack=pack,
                             records=len(records))
                    await self._punch_unnamed(pack, records)
                size = valid
            if size < end:  # (sync off) acknowledged records lost with the power
                # Their rows go before appends reuse those offsets: a read of such a row
                # would find another block's bytes there and quarantine them.
                lost = self._db.pack_keys_past(pack, size)
                if lost:
                    await self._drop(lost)
                    log.warning("blocks lost from a pack's unsynced tail forgotten (sync is "
                                "off)", pack=pack, blocks=len(lost), bytes=end - size)
            if size != end:  # grown as above, or (sync off) the index ran ahead of the file
                await self._write(self._db.set_pack_end, pack, size)
        if gone:
            if self.config.sync:
                await trio.to_thread.run_sync(fsync_dir, self._packs.root)
            await self._write(self._db.forget_packs, gone)
        kept = [p for p in present if p not in gone]
        await trio.to_thread.run_sync(self._packs.measure)  # (stats read it on the loop)
        newest = max([newest_known, *present])
        if kept and kept[-1] == newest:
            self._packs.set_active(newest, self._packs.size(newest) or 0)
        elif newest:
            self._packs.set_active(newest, None)  # the next append starts a new pack

    async def _punch_unnamed(self, pack: int, records: Sequence[Record]) -> None:
        """Records of a pack's unacknowledged tail that no row names after they were indexed:
        copies of blocks the index holds elsewhere (compaction's copies of a slice whose
        commit a crash prevented, or a put of a block stored meanwhile). Dead bytes: punched
        out, as they held their space until that pack was compacted."""
        dead = []
        for r in records:
            meta = self._db.get(r.key)
            if meta is None or meta.remote or (meta.pack, meta.off) != (pack, r.off):
                dead.append((pack, r.key, r.off, r.size))
        if dead:
            await trio.to_thread.run_sync(self._packs.punch, dead)
            log.info("unacknowledged copies of blocks indexed elsewhere punched out",
                     pack=pack, records=len(dead))

    async def reconcile(self) -> int:
        """Index block files the index lacks (a crash between a file's write and its row)
        and forget rows whose files are gone; runs in the background after an unclean stop,
        so a start never waits for it. Returns how many files were indexed."""
        added = 0
        batch: list[Row] = []
        now = time.time()
        scan = self._disk.scan()
        while True:
            page = await trio.to_thread.run_sync(_take, scan, 1000)
            for key, size in page:
                # A remote row whose file is back (its unlink was not durable) is local again.
                if key not in self._inflight and (not self._db.exists(key)
                                                  or self._db.is_remote(key)):
                    batch.append((key, bytes(cid_of_key(key)), size, now, None, 0))
            if batch:
                added += await self._index_strays(batch)
                batch = []
            if not page:
                break
        dropped = 0
        after = b""
        while page := self._db.page(after, local=True):
            after = page[-1][0]
            gone = await trio.to_thread.run_sync(self._missing_files, page)
            gone = [k for k in gone if k not in self._inflight and self._same_place(k, page)]
            if gone:
                await self._drop(gone)
                dropped += len(gone)
        if added or dropped:
            log.info("index reconciled with the block files after an unclean stop",
                     added=added, dropped=dropped)
        return added

    async def _index_strays(self, rows: list[Row]) -> int:
        """Index files found without a local row; each is claimed (as a put claims its block)
        and seen to still exist first, so an eviction or a GC under way cannot race it."""
        events = {}
        for row in rows:
            if row[0] not in self._inflight:
                self._inflight[row[0]] = events[row[0]] = trio.Event()
        try:
            def still_there() -> list[Row]:
                return [r for r in rows if r[0] in events and self._disk.path_for(r[0]).exists()]

            present = await trio.to_thread.run_sync(still_there)
            return await self._write(self._db.add_missing, present) if present else 0
        finally:
            for key, event in events.items():
                del self._inflight[key]
                event.set()

    def _missing_files(self, page: list[tuple[bytes, BlockMeta]]) -> list[bytes]:
        """Keys whose block file is gone, or whose pack is gone or too short to hold it."""
        sizes: dict[int, int] = {}
        out = []
        for key, meta in page:
            if meta.pack is None:
                if not self._disk.path_for(key).exists():
                    out.append(key)
                continue
            if meta.pack not in sizes:
                sizes[meta.pack] = self._packs.size(meta.pack) or 0
            if sizes[meta.pack] < meta.off + meta.size:
                out.append(key)
        return out

    def _same_place(self, key: bytes, page: list[tuple[bytes, BlockMeta]]) -> bool:
        """Still local where ``page`` saw it (compaction may have moved it since)."""
        now = self._db.get(key)
        was = next(m for k, m in page if k == key)
        return now is not None and not now.remote and (now.pack, now.off) == (was.pack, was.off)

    async def verify(self) -> VerifyResult:
        """Re-hash every local block; corrupt ones are quarantined and dropped from the index."""
        result = VerifyResult()
        after = b""
        while page := self._db.page(after, local=True):
            after = page[-1][0]
            for key, meta in page:
                if key in self._inflight:
                    continue
                try:
                    data, corrupt, now = await self._read_disk(key, meta)
                except StoreBusyError:
                    log.warning("verify: block kept moving while read; skipped", cid=meta.cid)
                    continue
                result.checked += 1
                if data is None and key not in self._inflight and now is not None \
                        and not now.remote:
                    (result.corrupt if corrupt else result.missing).append(meta.cid)
                    await self._drop([key])
                    log.error("verify: block bad", cid=meta.cid, corrupt=corrupt)
        return result
