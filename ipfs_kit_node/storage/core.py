"""The state every job of the block store shares, and the small operations they all use.

``TieredStore`` (store.py) is assembled from one class a job: the read path (reads.py), GC and
compaction (gc.py), puts (writes.py), start-up recovery and verify (recovery.py), with pins
and the service loop in store.py. They share one set of tiers, locks and in-flight claims, so
that state lives here once: the tiers and the index handle, the buffered heat updates, the
claims of blocks being written or removed (``_inflight``) and the holds of adds and pins under
way, the one-writer database helper and the removals every job makes.
"""

from __future__ import annotations

import contextlib
import contextvars
import sqlite3
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import trio
from multiformats import CID

from ..cid import cid_text
from ..errors import StoreError, StoreFullError, is_disk_full
from ..journal import fsync_dir, mkdir_durably
from ..logs import get_logger
from .blockdb import BlockDB, BlockMeta, Row, storage_error
from .disk import DiskTier
from .heat import HeatModel
from .memory import MemoryTier
from .packs import PACKS_DIR, PackFiles
from .remote import NoRemoteTier, RemoteTier
from .stats import TierStats

log = get_logger(__name__)
T = TypeVar("T")

CLOSE_DRAIN_TIMEOUT = 2.0  # seconds close() waits for puts and deletes under way
TOUCH_FLUSH = 20_000  # buffered heat updates flushed past this many (bounds their memory)
DAG_PB = 0x70

# Keys a task (and the tasks it starts) has stored or found while it holds them (see hold()).
_held: contextvars.ContextVar[set[bytes] | None] = contextvars.ContextVar("held", default=None)


@dataclass(frozen=True)
class StoreConfig:
    max_size: int = 100 * 10**9
    memory_size: int = 256 * 2**20
    gc_watermark: float = 0.9
    gc_period: float = 3600.0
    half_life: float = 3600.0
    snapshot_period: float = 300.0
    sync: bool = True
    parquet_export: bool = True
    pack_threshold: int = 1024 * 1024  # blocks up to this size go to pack files (0: none)
    pack_size: int = 64 * 2**20  # the active pack is rolled past this size


@dataclass
class _Batch:
    """Puts waiting for one group commit."""

    rows: list[Row] = field(default_factory=list)
    done: bool = False
    error: StoreError | None = None


class StoreCore:
    """The shared state of ``TieredStore`` and what every job of it uses (see the module
    docstring)."""

    def __init__(self, root: Path, config: StoreConfig | None = None, *,
                 remote: RemoteTier | None = None, clock: Callable[[], float] = time.time,
                 ) -> None:
        self.config = config or StoreConfig()
        self.root = root
        self.remote: RemoteTier = remote or NoRemoteTier()
        self._datastore = root / "datastore"
        mkdir_durably(self._datastore)  # the index's name must survive a power cut
        self._disk = DiskTier(root / "blocks", sync=self.config.sync)
        self._packs = PackFiles(root / "blocks" / PACKS_DIR, sync=self.config.sync,
                                pack_size=self.config.pack_size)
        self._heat = HeatModel(self.config.half_life, clock)
        self._db_handle: BlockDB | None = None
        self._memory = MemoryTier(self.config.memory_size)
        # Heat updates not yet written: key -> (heat, epoch, last access, new accesses).
        self._touched: dict[bytes, tuple[float, int, float, int]] = {}
        self._inflight: dict[bytes, trio.Event] = {}
        #: Removals started (_remove, _drop): a read that began before one checks that its
        #: block is still here before offering it to the memory tier, which must never hold
        #: a block the store has not (read_soon trusts it without an index lookup).
        self._removals = 0
        self._holds: Counter[bytes] = Counter()  # keys held by pins and adds under way
        self._reserved = 0  # bytes of writes under way, counted against max_size
        self._gc_lock = trio.Lock()
        self._compacting = False  # a compaction started by a put over budget is under way
        self._export_lock = trio.Lock()  # one Parquet export at a time (see _export_parquet)
        self._pin_lock = trio.Lock()
        self._db_lock = trio.Lock()  # one write transaction at a time
        self._batch = _Batch()
        self._threads = trio.CapacityLimiter(8)
        self._disk_stats = TierStats()
        self._remote_stats = TierStats()
        self._closed = False
        self._unclean = False
        self._listeners: list[Callable[[CID, int], None]] = []
        self._pin_listeners: list[Callable[[CID, bool], None]] = []

    @property
    def db_path(self) -> Path:
        return self._datastore / "index.sqlite"

    @property
    def parquet_path(self) -> Path:
        return self._datastore / "index.parquet"

    @property
    def scratch_dir(self) -> Path:
        """Where a caller may spool an upload: on the store's disk, emptied at every start."""
        return self._disk.tmp

    @property
    def _clean_marker(self) -> Path:
        return self._datastore / "CLEAN"

    @property
    def _db(self) -> BlockDB:
        if self._db_handle is None:
            raise StoreError("the store is closed")
        return self._db_handle

    @property
    def _used(self) -> int:
        return self._db.counters.bytes

    async def close(self) -> None:
        """Flush, checkpoint and mark a clean shutdown. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            with trio.CancelScope(shield=True):
                # Puts and deletes under way finish first (briefly).
                with trio.move_on_after(CLOSE_DRAIN_TIMEOUT):
                    while self._inflight:
                        await next(iter(self._inflight.values())).wait()
                await self._flush_touches()
                if self._inflight:
                    log.warning("store writes still running at close; the next start "
                                "indexes their files in the background",
                                running=len(self._inflight))
                else:
                    async with self._db_lock:
                        await trio.to_thread.run_sync(self._db.checkpoint)
                    await trio.to_thread.run_sync(self._mark_clean)
        except (StoreError, sqlite3.Error) as exc:
            log.error("store closed uncleanly", error=str(exc))
            if isinstance(exc, StoreError):
                raise
        finally:
            if self._db_handle is not None:
                async with self._db_lock:
                    self._db_handle.close()
                    self._db_handle = None
            self._packs.close()
        log.info("store closed")

    def _mark_clean(self) -> None:
        try:
            self._clean_marker.touch()
            fsync_dir(self._datastore)
        except OSError as exc:
            raise self._os_error(exc, "cannot write the clean-shutdown marker") from exc

    def _os_error(self, exc: OSError, what: str) -> StoreError:
        """A typed error for a failed file operation; a full disk says what to do."""
        if is_disk_full(exc):
            return StoreFullError(
                f"the disk under {self.root} is full: {what} ({exc.strerror}); free space on "
                "that disk, or lower storage.max_size so GC keeps the store smaller"
            )
        return StoreError(f"{what}: {exc}")

    async def _write(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """Run one database write on a worker thread, one at a time; typed errors."""
        async with self._db_lock:
            db = self._db  # raises once closed
            del db
            try:
                return await trio.to_thread.run_sync(lambda: fn(*args, **kw))
            except sqlite3.Error as exc:
                raise storage_error(exc, "cannot update the block index", self.root) from exc

    def _meta(self, key: bytes) -> BlockMeta | None:
        meta = self._db.get(key)
        touched = self._touched.get(key)
        if meta is not None and touched is not None:
            meta.heat, meta.heat_epoch, meta.last_access, n = touched
            meta.access_count += n
        return meta

    def _heat_of(self, key: bytes) -> float:
        touched = self._touched.get(key)
        if touched is not None:
            return self._heat.value(touched[0], touched[1])
        meta = self._db.get(key)
        return 0.0 if meta is None else self._heat.value(meta.heat, meta.heat_epoch)

    def _touch(self, key: bytes, meta: BlockMeta | None) -> float:
        """One more access (buffered; written by ``_flush_touches``); returns the new heat.
        ``meta`` may be None when the key has a buffered access already."""
        old = self._touched.get(key)
        if old is None:
            assert meta is not None
            heat, epoch, n = meta.heat, meta.heat_epoch, 0
        else:
            heat, epoch, n = old[0], old[1], old[3]
        heat, epoch = self._heat.touch(heat, epoch)
        self._touched[key] = (heat, epoch, time.time(), n + 1)
        if len(self._touched) > TOUCH_FLUSH and self._nursery is not None:
            self._nursery.start_soon(self._flush_touches)
        elif len(self._touched) > 4 * TOUCH_FLUSH:  # no background flusher: stay bounded
            self._touched.pop(next(iter(self._touched)))
        return heat

    _nursery: trio.Nursery | None = None

    @property
    def background(self) -> trio.Nursery | None:
        """The nursery of ``run`` (None when not running): long jobs started for a caller
        who reads their progress as a stream (``pin add --progress``)."""
        return self._nursery

    async def _flush_touches(self) -> None:
        if not self._touched or self._db_handle is None:
            return
        rows = [(k, *v) for k, v in self._touched.items()]
        self._touched = {}
        await self._write(self._db.touch_many, rows)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the store is closed")

    async def _wait_inflight(self, key: bytes) -> None:
        while (event := self._inflight.get(key)) is not None:
            await event.wait()

    def _note_held(self, key: bytes) -> None:
        held = _held.get()
        if held is not None and key not in held:
            held.add(key)
            self._holds[key] += 1

    @contextlib.contextmanager
    def hold(self) -> Iterator[set[bytes]]:
        """While this is open, GC spares every block the current task (and the tasks it
        starts) stores or finds already stored: an add or a pin fetch then pins them."""
        held: set[bytes] = set()
        token = _held.set(held)
        try:
            yield held
        finally:
            _held.reset(token)
            for key in held:
                self._holds[key] -= 1
                if self._holds[key] <= 0:
                    del self._holds[key]

    async def _drop(self, keys: list[bytes]) -> None:
        """Forget blocks whose files are gone or bad (pinned or not); reads of them wait
        meanwhile (read_soon starts none, so no access is buffered for them again)."""
        self._removals += 1
        events = {}
        for key in keys:
            self._memory.discard(key)
            self._touched.pop(key, None)
            if key not in self._inflight:
                self._inflight[key] = events[key] = trio.Event()
        try:
            await self._write(self._db.delete_many, keys, only_unpinned=False)
        finally:
            for key, event in events.items():
                del self._inflight[key]
                event.set()

    async def _remove(self, keys: list[bytes], *, only_unpinned: bool
                      ) -> list[tuple[bytes, int]]:
        """Drop rows, then unlink files; puts and reads of them wait meanwhile. Returns
        (key, size) of those removed (a block pinned since it was chosen stays)."""
        self._removals += 1
        events = {}
        for key in keys:
            if key not in self._inflight:
                self._inflight[key] = events[key] = trio.Event()
        try:
            gone = await self._write(self._db.delete_many, list(events),
                                     only_unpinned=only_unpinned)
            for key, _, _, _ in gone:
                self._memory.discard(key)
                self._touched.pop(key, None)
            files = [k for k, _, pack, _ in gone if pack is None]
            holes = [(pack, k, off, size) for k, size, pack, off in gone if pack is not None]
            if files or holes:
                async with self._threads:
                    await trio.to_thread.run_sync(self._unlink_and_punch, files, holes)
        finally:
            for key, event in events.items():
                del self._inflight[key]
                event.set()
        return [(k, size) for k, size, _, _ in gone]

    def _unlink_and_punch(self, files: list[bytes],
                          holes: list[tuple[int, bytes, int, int]]) -> None:
        """The space of dropped blocks freed (worker thread): their files unlinked, their
        pack records punched out (a punch that fails leaves dead bytes for compaction)."""
        if files:
            self._disk.delete_many(files)
        if holes:
            self._packs.punch(holes)

    @staticmethod
    async def _guarded(job: Callable[[], Awaitable[Any]]) -> None:
        try:
            await job()
        except Exception as exc:  # the edge of a background job: logged
            log.error("store job failed", job=getattr(job, "__name__", "?"),
                      error=f"{type(exc).__name__}: {exc}"[:500],
                      exc_info=not isinstance(exc, (StoreError, OSError)))

    @classmethod
    async def _every(cls, period: float, job: Callable[[], Awaitable[Any]]) -> None:
        while True:
            await trio.sleep(period)
            await cls._guarded(job)  # logged, tried next period


def _text(cid: CID) -> str:
    """``str(cid)`` for a CID from ``to_cid`` (v1 in base32) without multiformats' argument
    checks: ~4 µs instead of ~400 µs under load, paid on every pin, unpin and put."""
    return cid_text(bytes(cid))


def _take(it: Iterator[T], n: int) -> list[T]:
    out = []
    for item in it:
        out.append(item)
        if len(out) >= n:
            break
    return out


def _take_page(pages: Iterator[T]) -> T | None:
    return next(pages, None)
