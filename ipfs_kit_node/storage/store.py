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

``TieredStore`` is assembled from one class a job, each in its own module: the shared state
(core.py), the read path (reads.py), GC and compaction (gc.py), puts (writes.py), recovery
at open, reconcile and verify (recovery.py). Pins, the block listing and the service loop
are here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

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
from ..logs import get_logger
from ..service import TaskStatus
from ..unixfs import pbscan
from .blockdb import MissingBlocks, Pin, PinMode
from .blocks import CidLike, cid_of_key, key_of, to_cid
from .core import DAG_PB, StoreConfig, _text
from .gc import GcResult
from .reads import PendingRead, inline_bytes
from .recovery import Recovery, VerifyResult
from .stats import StoreStats, TierStats
from .writes import MAX_BLOCK_SIZE, Writes

log = get_logger(__name__)

PARQUET_EXPORT_TIMEOUT = 60.0
TOUCH_PERIOD = 10.0


class TieredStore(Recovery, Writes):
    """The node's block store. Build with ``await TieredStore.open(...)``; ``await close()``."""

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    async def open(cls, root: Path, config: StoreConfig | None = None, **kw: Any
                   ) -> TieredStore:
        store = cls(root, config, **kw)
        await store._load()
        return store

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
            if (inline := inline_bytes(cid)) is not None:  # present by definition
                if recursive:
                    stack.extend(self.links(cid, inline))
                continue
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
            layout, _, _ = pbscan.split(memoryview(data), cid)
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
        every block must still be in the index. Identity CIDs are present and not counted
        (never in the index): only their links are followed."""
        seen: dict[bytes, None] = {}
        inlined: set[bytes] = set()
        stack = [root]
        steps = 0
        while stack:
            cid = stack.pop()
            key = key_of(cid)
            if key in seen or key in inlined:
                continue
            if (inline := inline_bytes(cid)) is not None:
                inlined.add(key)
                if recursive:
                    stack.extend(self.links(cid, inline))
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
            if (inline := inline_bytes(cid)) is not None:  # its bytes are its CID: sound
                if pin.mode == "recursive":
                    try:
                        stack.extend(self.links(cid, inline))
                    except StoreError as exc:
                        bad.append((str(cid), str(exc)))
                continue
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

    # -- stats -------------------------------------------------------------------------------

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
