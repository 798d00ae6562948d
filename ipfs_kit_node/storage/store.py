"""TieredStore: memory → disk → remote, keyed by multihash, heat-scored, pinned, collected.

Every block lives on disk (written durably before ``put`` returns); the hottest also sit in
the memory tier; a pinned block may leave the disk only when the remote tier says it is safely
held elsewhere. Reads verify bytes against the CID whatever tier supplied them.

The index and the pins live in SQLite (blockdb.py): memory stays bounded whatever the block
count, a restart reads one row, and a pin moves with its blocks' reference counts in one
transaction. Blocks up to ``pack_threshold`` bytes are appended to pack files (packs.py),
bigger ones get a file each (disk.py); a row says which, and both layouts are read. Puts are
group-committed: one commit (and fsync) for the puts under way at once.
GC works in slices of ``PAGE_ROWS`` blocks with a checkpoint between them, and never takes a
block stored after it began, one being written, or one a pin in progress holds (``hold()``).

All methods run on the trio event loop; blocking file and database work runs on worker
threads.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import trio
from multiformats import CID

from ..children import run_exporter
from ..cid import cid_from_bytes
from ..errors import (
    BlockNotFoundError,
    CodecError,
    PinnedBlockError,
    StoreBusyError,
    StoreError,
)
from ..journal import fsync_dir
from ..logs import get_logger
from ..service import TaskStatus
from ..unixfs import pbscan
from .blockdb import BlockDB, BlockMeta, MissingBlocks, Pin, PinMode, Row, storage_error
from .blocks import CidLike, cid_of_key, key_of, to_cid
from .core import (
    DAG_PB,
    StoreConfig,
    _take,
    _text,
)
from .gc import GcResult
from .index import remove_quietly
from .reads import PendingRead
from .stats import StoreStats, TierStats
from .writes import MAX_BLOCK_SIZE, Writes

log = get_logger(__name__)
T = TypeVar("T")

PARQUET_EXPORT_TIMEOUT = 60.0
TOUCH_PERIOD = 10.0


@dataclass
class VerifyResult:
    checked: int = 0
    corrupt: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.corrupt and not self.missing


class TieredStore(Writes):
    """The node's block store. Build with ``await TieredStore.open(...)``; ``await close()``."""

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    async def open(cls, root: Path, config: StoreConfig | None = None, **kw: Any
                   ) -> TieredStore:
        store = cls(root, config, **kw)
        await store._load()
        return store

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
        newest = max([newest_known, *present])
        if kept and kept[-1] == newest:
            self._packs.set_active(newest, self._packs.size(newest) or 0)
        elif newest:
            self._packs.set_active(newest, None)  # the next append starts a new pack

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

    async def snapshot(self, export_timeout: float | None = None) -> None:
        """Write buffered heat to the index and refresh the Parquet export."""
        await self._flush_touches()
        if self.config.parquet_export:
            await self._export_parquet(export_timeout or PARQUET_EXPORT_TIMEOUT)

    async def _export_parquet(self, timeout: float = PARQUET_EXPORT_TIMEOUT) -> None:
        """Best effort, in a child process (see index.py); a failure is only logged. One at
        a time: the export at start and the first periodic one ran side by side, both writing
        ``index.parquet.tmp``, so one renamed into place a file the other was still writing
        (a reader then met a footer that was not there yet: "Invalid data")."""
        if not self.db_path.exists():
            return
        async with self._export_lock:
            await run_exporter("ipfs_kit_node.storage.parquet_export", str(self.db_path),
                               str(self.parquet_path), timeout=timeout, what="parquet export")

    # -- blocks ------------------------------------------------------------------------------

    def add_pin_listener(self, listener: Callable[[CID, bool], None]) -> None:
        """Called with (root, True) after a pin and (root, False) after an unpin."""
        self._pin_listeners.append(listener)

    def add_listener(self, listener: Callable[[CID, int], None]) -> None:
        """Called with (cid, size) after each new block is stored (Bitswap serves waiters)."""
        self._listeners.append(listener)

    async def delete(self, cid: CidLike) -> bool:
        """Remove an unpinned block; False if absent. Raises PinnedBlockError."""
        cid, key, meta = await self._settled(cid)
        if meta is None:
            return False
        if meta.pins:
            raise PinnedBlockError(f"block {cid} is pinned; unpin it first")
        await self._remove([key], only_unpinned=True)
        return True

    async def __aiter__(self) -> AsyncIterator[CID]:
        after = b""
        while page := self._db.page(after, local=True):
            for _key, meta in page:
                yield to_cid(meta.cid)
            after = page[-1][0]
            await trio.lowlevel.checkpoint()

    def __len__(self) -> int:
        c = self._db.counters
        return c.blocks + c.remote_blocks

    # -- pins --------------------------------------------------------------------------------

    def pins(self) -> dict[str, PinMode]:
        """Every pin root and its mode (for a long listing, page with ``iter_pins``)."""
        out: dict[str, PinMode] = {}
        after = ""
        while page := self._db.pin_page(after, limit=10_000):
            out.update((p.cid, p.mode) for p in page)
            after = page[-1].cid
        return out

    async def iter_pins(self) -> AsyncIterator[Pin]:
        """Pin roots in CID order, a page at a time."""
        after = ""
        while page := self._db.pin_page(after):
            for pin in page:
                yield pin
            after = page[-1].cid
            await trio.lowlevel.checkpoint()

    async def iter_indirect(self) -> AsyncIterator[str]:
        """Blocks pinned only through a recursive pin's DAG (not roots themselves)."""
        after = b""
        while page := self._db.page(after, pinned=True):
            for key, meta in page:
                if not self._db.is_root(key):
                    yield meta.cid
            after = page[-1][0]
            await trio.lowlevel.checkpoint()

    def pin_of(self, cid: CidLike) -> Pin | None:
        return self._db.pin(_text(to_cid(cid)))

    def pin_type(self, cid: CidLike) -> str | None:
        """recursive, direct, indirect (covered by a recursive pin), or None."""
        cid = to_cid(cid)
        pin = self._db.pin(_text(cid))
        if pin is not None:
            return pin.mode
        return "indirect" if self._db.pins_of(key_of(cid)) else None

    def is_pinned(self, cid: CidLike) -> bool:
        return self._db.pins_of(key_of(to_cid(cid))) > 0

    async def dag_keys(self, root: CidLike) -> list[bytes]:
        """Store keys of a whole DAG held here (locally or remotely); BlockNotFoundError if a
        block is missing. The remote tier uses it to know which blocks a remote pin covers."""
        self._check_open()
        return await self._dag_keys(to_cid(root), True)

    async def dag_missing(self, root: CidLike, recursive: bool = True) -> AsyncIterator[CID]:
        """Blocks of the DAG not held here, as far as the blocks held let us see."""
        seen: set[bytes] = set()
        stack = [to_cid(root)]
        while stack:
            cid = stack.pop()
            key = key_of(cid)
            if key in seen:
                continue
            seen.add(key)
            meta = self._db.get(key)
            if meta is None:
                yield cid
                continue
            if recursive and cid.codec.code == DAG_PB:
                stack.extend(self.links(cid, await self._read(cid, key, meta)))

    @staticmethod
    def links(cid: CID, data: bytes) -> list[CID]:
        """The CIDs a dag-pb block links to (none for other codecs). Read with the lazy
        scanner and the fast CID parser, bytes in: a pin's walk of a 64 MiB file spent twice
        the upload's time building and printing CIDs through multiformats."""
        if cid.codec.code != DAG_PB:
            return []
        try:
            # Split over a view: a leaf's Data (256 KiB) is then not copied just to be dropped
            # (the copy was most of a 64 MiB add's pin walk).
            layout, _, _ = pbscan.split(memoryview(data), cid)  # type: ignore[arg-type]
            assert layout is not None  # read to the end: no max_links
            out, pos = [], 0
            while pos < layout.links_end:
                link, pos = pbscan.read_link(data, pos, cid)
                out.append(cid_from_bytes(link.cid))
            return out
        except CodecError as exc:
            raise StoreError(str(exc)) from exc

    async def _dag_keys(self, root: CID, recursive: bool, *, tolerant: bool = False,
                        links: Mapping[bytes, Sequence[CID]] | None = None) -> list[bytes]:
        """Keys of the root and (recursively) every block it links to; all must be here
        (``tolerant``: those that are). ``links``: the children of dag-pb blocks whose bytes
        the caller verified against their keys (an upload's), so those are not read back;
        every block must still be in the index."""
        seen: dict[bytes, None] = {}
        stack = [root]
        steps = 0
        while stack:
            cid = stack.pop()
            key = key_of(cid)
            if key in seen:
                continue
            meta = self._db.get(key)
            if meta is None:
                if tolerant:
                    continue
                raise BlockNotFoundError(
                    str(cid), f"in the DAG of {root}; fetch the whole DAG before pinning it"
                ) if cid != root else BlockNotFoundError(str(cid))
            seen[key] = None
            if recursive and cid.codec.code == DAG_PB:
                children = links.get(key) if links else None
                if children is None:
                    try:
                        data = await self._read(cid, key, meta)
                    except BlockNotFoundError:
                        if tolerant:
                            continue
                        raise
                    children = self.links(cid, data)
                stack.extend(children)
            steps += 1
            if steps % 256 == 0:
                await trio.lowlevel.checkpoint()
        return list(seen)

    async def _old_keys(self, cid: CID, current: Pin | None) -> list[bytes]:
        if current is None:
            return []
        return await self._dag_keys(cid, current.mode == "recursive", tolerant=True)

    async def pin(self, cid: CidLike, recursive: bool = True, *, name: str = "",
                  links: Mapping[bytes, Sequence[CID]] | None = None) -> None:
        """Pin a block (direct) or a whole DAG (recursive); every block must be here.
        Recorded (with its blocks' counts, in one transaction) before returning. ``links``
        as for ``_dag_keys`` (an upload's verified nodes: the walk reads none back)."""
        self._check_open()
        cid = to_cid(cid)
        mode: PinMode = "recursive" if recursive else "direct"
        keys = await self._dag_keys(cid, recursive, links=links)
        async with self._pin_lock:
            current = self._db.pin(_text(cid))
            if current is not None and (current.mode == mode or current.mode == "recursive"):
                return
            old = await self._old_keys(cid, current)
            try:
                await self._write(self._db.add_pin, Pin(_text(cid), mode, name), key_of(cid),
                                  keys, old)
            except MissingBlocks as exc:
                raise BlockNotFoundError(
                    str(cid_of_key(exc.keys[0])), f"in the DAG of {cid}: collected while "
                    "pinning; add it again") from None
        for listener in self._pin_listeners:
            listener(cid, True)

    async def unpin(self, cid: CidLike) -> None:
        self._check_open()
        cid = to_cid(cid)
        async with self._pin_lock:
            current = self._db.pin(_text(cid))
            if current is None:
                raise StoreError(f"{cid} is not pinned")
            keys = await self._old_keys(cid, current)
            await self._write(self._db.remove_pin, _text(cid), keys)
        for listener in self._pin_listeners:
            listener(cid, False)

    async def update_pin(self, old: CidLike, new: CidLike, *, unpin: bool = True) -> None:
        """Move a recursive pin from OLD to NEW (whose blocks must all be here) atomically:
        never a moment with neither pinned. ``unpin=False`` keeps OLD."""
        self._check_open()
        old, new = to_cid(old), to_cid(new)
        keys = await self._dag_keys(new, True)
        async with self._pin_lock:
            current = self._db.pin(_text(old))
            if current is None or current.mode != "recursive":
                raise StoreError(f"{old} is not pinned recursively")
            old_keys = await self._old_keys(old, current) if unpin else []
            existing = self._db.pin(_text(new))
            replaced: list[bytes] = []
            if existing is not None and existing.mode == "recursive":
                keys = []  # already counted; only OLD goes
            elif existing is not None:
                # Its direct count gives way to the recursive one, whether OLD stays or not.
                replaced = [key_of(new)]
            try:
                await self._write(self._db.update_pin, current,
                                  Pin(_text(new), "recursive", current.name), key_of(new),
                                  keys, old_keys, unpin and old != new, replaced)
            except MissingBlocks as exc:
                raise BlockNotFoundError(
                    str(cid_of_key(exc.keys[0])), f"in the DAG of {new}: collected while "
                    "pinning; try again") from None
        for listener in self._pin_listeners:
            listener(new, True)
            if unpin and old != new:
                listener(old, False)

    async def verify_pin(self, cid: CidLike) -> list[tuple[str, str]]:
        """Every block of a pin present and re-hashed: (cid, problem) of each bad one."""
        root = to_cid(cid)
        pin = self._db.pin(_text(root))
        if pin is None:
            raise StoreError(f"{root} is not pinned")
        bad: list[tuple[str, str]] = []
        seen: set[bytes] = set()
        stack = [root]
        while stack:
            cid = stack.pop()
            key = key_of(cid)
            if key in seen:
                continue
            seen.add(key)
            meta = self._db.get(key)
            if meta is None:
                bad.append((str(cid), "missing"))
                continue
            if meta.remote:
                if pin.mode == "recursive" and cid.codec.code == DAG_PB:
                    stack.extend(self.links(cid, await self._read(cid, key, meta)))
                continue  # held by the remote tier: not re-hashed here
            try:
                data, corrupt, now = await self._read_disk(key, meta)
            except StoreBusyError as exc:
                bad.append((str(cid), str(exc)))  # not dropped: it is there
                continue
            if data is None:
                bad.append((str(cid), "corrupt (quarantined)" if corrupt else "missing"))
                if now is not None and not now.remote:
                    await self._drop([key])
                continue
            if pin.mode == "recursive":
                try:
                    stack.extend(self.links(cid, data))
                except StoreError as exc:
                    bad.append((str(cid), str(exc)))
        return bad

    # -- verify, stats -----------------------------------------------------------------------

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

    def stats(self) -> StoreStats:
        mem = self._memory.stats
        c = self._db.counters
        memory = TierStats(blocks=len(self._memory), bytes=self._memory.bytes_used,
                           hits=mem.hits, lookups=mem.hits + mem.misses)
        disk = TierStats(blocks=c.blocks, bytes=c.bytes, hits=self._disk_stats.hits,
                         lookups=self._disk_stats.lookups)
        far = TierStats(blocks=c.remote_blocks, bytes=c.remote_bytes,
                        hits=self._remote_stats.hits, lookups=self._remote_stats.lookups)
        packs, pack_bytes, pack_live = self._db.pack_totals()
        return StoreStats(memory=memory, disk=disk, remote=far, max_size=self.config.max_size,
                          memory_budget=self.config.memory_size, pins=c.pins,
                          pinned_blocks=c.pinned_blocks, packs=packs, pack_bytes=pack_bytes,
                          pack_dead_bytes=pack_bytes - pack_live)

    def heat(self, cid: CidLike) -> float:
        return self._heat_of(key_of(to_cid(cid)))

    # -- service -----------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Periodic GC, heat flushes and exports for as long as the node runs; closes the
        store at the end."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                if self.config.parquet_export:
                    nursery.start_soon(self._export_parquet)
                if self._unclean:
                    nursery.start_soon(self._guarded, self.reconcile)
                nursery.start_soon(self._every, self.config.gc_period, self.gc)
                nursery.start_soon(self._every, self.config.snapshot_period, self.snapshot)
                nursery.start_soon(self._every, TOUCH_PERIOD, self._flush_touches)
                task_status.started()
        finally:
            self._nursery = None
            try:
                await self.close()
            except (StoreError, OSError) as exc:
                log.error("store closed uncleanly; the next start indexes stray files in the "
                          "background", error=str(exc))


__all__ = ["DAG_PB", "MAX_BLOCK_SIZE", "GcResult", "PendingRead", "StoreConfig", "StoreStats",
           "TieredStore", "VerifyResult"]
