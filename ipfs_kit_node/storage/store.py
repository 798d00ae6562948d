"""TieredStore: memory → disk → remote, keyed by multihash, heat-scored, pinned, collected.

Every block lives on disk (written durably before ``put`` returns); the hottest also sit in
the memory tier; a pinned block may leave the disk only when the remote tier says it is safely
held elsewhere. Reads verify bytes against the CID whatever tier supplied them.

All methods run on the trio event loop; blocking file work runs on worker threads.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
from multiformats import CID

from ..children import run_exporter
from ..codecs import dagpb
from ..errors import (
    BlockNotFoundError,
    CodecError,
    PinnedBlockError,
    StoreError,
    StoreFullError,
    is_disk_full,
)
from ..journal import fsync_dir
from ..logs import get_logger
from ..service import TaskStatus
from .blocks import CidLike, cid_of_key, key_of, to_cid, verify
from .disk import DiskTier
from .heat import HeatModel
from .index import BlockMeta, Journal, read_snapshot, remove_quietly, write_snapshot
from .memory import MemoryTier
from .pins import PinMode, PinSet
from .remote import NoRemoteTier, RemoteTier

log = get_logger(__name__)

MAX_BLOCK_SIZE = 4 * 1024 * 1024
PARQUET_EXPORT_TIMEOUT = 20.0
CLOSE_DRAIN_TIMEOUT = 2.0  # seconds close() waits for puts and deletes under way
CLOSE_EXPORT_TIMEOUT = 1.0
DAG_PB = 0x70
RAW = 0x55


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


@dataclass
class TierStats:
    blocks: int = 0
    bytes: int = 0
    hits: int = 0
    lookups: int = 0

    @property
    def hit_ratio(self) -> float:
        return self.hits / self.lookups if self.lookups else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"blocks": self.blocks, "bytes": self.bytes, "hits": self.hits,
                "lookups": self.lookups, "hit_ratio": round(self.hit_ratio, 4)}


@dataclass
class StoreStats:
    memory: TierStats
    disk: TierStats
    remote: TierStats
    max_size: int
    memory_budget: int
    pins: int
    pinned_blocks: int

    def as_dict(self) -> dict[str, Any]:
        return {"memory": {**self.memory.as_dict(), "budget": self.memory_budget},
                "disk": {**self.disk.as_dict(), "max_size": self.max_size},
                "remote": self.remote.as_dict(),
                "pins": self.pins, "pinned_blocks": self.pinned_blocks}


@dataclass
class GcResult:
    removed: int = 0
    freed: int = 0
    evicted_to_remote: int = 0
    remaining: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class VerifyResult:
    checked: int = 0
    corrupt: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.corrupt and not self.missing


class TieredStore:
    """The node's block store. Build with ``await TieredStore.open(...)``; ``await close()``."""

    def __init__(self, root: Path, config: StoreConfig | None = None, *,
                 remote: RemoteTier | None = None, clock: Callable[[], float] = time.time,
                 ) -> None:
        self.config = config or StoreConfig()
        self.root = root
        self.remote: RemoteTier = remote or NoRemoteTier()
        self._datastore = root / "datastore"
        self._datastore.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._disk = DiskTier(root / "blocks", sync=self.config.sync)
        self._heat = HeatModel(self.config.half_life, clock)
        self._index: dict[bytes, BlockMeta] = {}
        self._memory = MemoryTier(self.config.memory_size)
        self._pins = PinSet(self._datastore / "pins.json")
        self._journal: Journal | None = None
        self._used = 0  # bytes on local disk
        self._inflight: dict[bytes, trio.Event] = {}
        self._gc_lock = trio.Lock()
        self._pin_lock = trio.Lock()
        # Held by snapshot() from capturing the index until the journal is cut, and around
        # each change whose synced record a crash relies on (a move to the remote tier): that
        # record then lands either in the capture or after it, never in a cut-off window.
        self._snapshot_lock = trio.Lock()
        self._threads = trio.CapacityLimiter(8)
        self._disk_stats = TierStats()
        self._remote_stats = TierStats()
        self._closed = False
        self._listeners: list[Callable[[CID, int], None]] = []
        self._pin_listeners: list[Callable[[CID, bool], None]] = []

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    async def open(cls, root: Path, config: StoreConfig | None = None, **kw: Any
                   ) -> TieredStore:
        store = cls(root, config, **kw)
        await store._load()
        return store

    @property
    def _snapshot_path(self) -> Path:
        return self._datastore / "index.msgpack"

    @property
    def parquet_path(self) -> Path:
        return self._datastore / "index.parquet"

    @property
    def _journal_path(self) -> Path:
        return self._datastore / "index.journal"

    @property
    def _clean_marker(self) -> Path:
        return self._datastore / "CLEAN"

    async def _load(self) -> None:
        clean = self._clean_marker.exists()
        # Durably gone before anything changes: a crash must never leave a marker that
        # vouches for a snapshot and journal this run no longer keeps in step.
        remove_quietly(self._clean_marker, durably=True)
        index: dict[bytes, BlockMeta] = {}
        fresh = not self._snapshot_path.exists() and not self._journal_path.exists()
        trusted = clean or (fresh and not any(self._disk.scan()))
        if self._snapshot_path.exists():
            try:
                index = await trio.to_thread.run_sync(read_snapshot, self._snapshot_path)
            except Exception as exc:
                log.warning("index snapshot damaged; rebuilding from disk",
                            path=str(self._snapshot_path), error=str(exc))
                index, trusted = {}, False
        for record in Journal.replay(self._journal_path):
            self._apply(index, record)
        if not trusted:
            index = await self._reconcile(index)
        self._index = index
        self._used = sum(m.size for m in index.values() if not m.remote)
        self._open_journal()
        self._pins.load()
        await self._recount_pins()
        log.info("store opened", blocks=len(index), bytes=self._used, clean=clean,
                 pins=len(self._pins.roots))

    @staticmethod
    def _apply(index: dict[bytes, BlockMeta], record: tuple[Any, ...]) -> None:
        with contextlib.suppress(ValueError, TypeError, IndexError):
            if record[0] == "put" and record[1] not in index:
                _, key, cid, size, t = record[:5]
                index[bytes(key)] = BlockMeta(cid=str(cid), size=int(size),
                                              first_access=float(t), last_access=float(t))
            elif record[0] == "del":
                index.pop(bytes(record[1]), None)
            elif record[0] == "remote" and record[1] in index:
                index[bytes(record[1])].remote = bool(record[2])
            elif record[0] == "remote" and record[2] and len(record) >= 5:
                # Self-contained, so a block moved away survives a damaged snapshot too.
                _, key, _, cid, size = record[:5]
                index[bytes(key)] = BlockMeta(cid=str(cid), size=int(size), first_access=0.0,
                                              last_access=0.0, remote=True)

    async def _reconcile(self, index: dict[bytes, BlockMeta]) -> dict[bytes, BlockMeta]:
        """Make the index agree with the disk: the files are the truth."""
        def scan() -> tuple[dict[bytes, int], int]:
            return dict(self._disk.scan()), self._disk.clean_tmp()

        on_disk, tmp_removed = await trio.to_thread.run_sync(scan)
        now = time.time()
        out: dict[bytes, BlockMeta] = {}
        for key, size in on_disk.items():
            meta = index.get(key)
            if meta is None or meta.size != size:
                meta = BlockMeta(cid=str(cid_of_key(key)), size=size,
                                 first_access=now, last_access=now)
            meta.remote = False
            out[key] = meta
        for key, meta in index.items():
            if key not in out and meta.remote:
                out[key] = meta
        log.info("index rebuilt from disk", blocks=len(out), tmp_removed=tmp_removed,
                 dropped=sum(1 for k, m in index.items() if k not in out))
        return out

    async def close(self) -> None:
        """Snapshot the index and mark a clean shutdown. Safe to call twice.

        If the snapshot cannot be written (a full disk), the store still closes, without the
        clean marker, so the next start rebuilds the index from the disk.
        """
        if self._closed:
            return
        self._closed = True
        try:
            with trio.CancelScope(shield=True):
                # Puts and deletes under way finish first (briefly): one acknowledged after
                # the snapshot would be missing from a store marked clean.
                with trio.move_on_after(CLOSE_DRAIN_TIMEOUT):
                    while self._inflight:
                        await next(iter(self._inflight.values())).wait()
                # Shutdown must stay fast: the export gets a second, then the next start
                # refreshes it.
                await self.snapshot(export_timeout=CLOSE_EXPORT_TIMEOUT)
                if self._inflight:
                    log.warning("store writes still running at close; the next start "
                                "rescans the disk", running=len(self._inflight))
                else:
                    await trio.to_thread.run_sync(self._mark_clean)
        except StoreError as exc:
            log.error("index snapshot failed at close; next start rebuilds from disk",
                      error=str(exc))
            raise
        finally:
            if self._journal is not None:
                self._journal.close()
                self._journal = None
        log.info("store closed", blocks=len(self._index))

    def _mark_clean(self) -> None:
        """The CLEAN marker, durable: the next start may trust the snapshot."""
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

    def _open_journal(self) -> None:
        """Open the index journal; on a full disk the store runs without it for now."""
        try:
            self._journal = Journal(self._journal_path)
        except (OSError, StoreError) as exc:
            self._journal = None
            log.error("index journal cannot be opened; the next start will rebuild the index "
                      "from disk", path=str(self._journal_path), error=str(exc))

    async def snapshot(self, export_timeout: float | None = None) -> None:
        """Write the index snapshot, cut the journal records it holds, refresh the Parquet
        export.

        The snapshot is durable (file and folder fsynced) before the journal is cut. Records
        appended while it is written (puts, deletes) stay in the journal: the capture lacks
        them, and a clean start trusts snapshot plus journal without a rescan.
        """
        async with self._snapshot_lock:
            # No await between the capture and the journal offset: they agree exactly.
            journal = self._journal
            covered = journal.end() if journal is not None else 0
            rows = [(k, m, self._tier_of(k, m)) for k, m in self._index.items()]
            try:
                await trio.to_thread.run_sync(write_snapshot, self._snapshot_path, rows,
                                              self.config.half_life)
                if journal is not None and journal is self._journal:
                    journal.drop_before(covered)  # on this thread: no append interleaves
                    await trio.to_thread.run_sync(journal.sync)
            except OSError as exc:
                raise self._os_error(exc, "cannot write the index snapshot") from exc
        if self.config.parquet_export:
            await self._export_parquet(export_timeout or PARQUET_EXPORT_TIMEOUT)

    async def _export_parquet(self, timeout: float = PARQUET_EXPORT_TIMEOUT) -> None:
        """Best effort, in a child process (see index.py); a failure is only logged."""
        if not self._snapshot_path.exists():
            return
        await run_exporter("ipfs_kit_node.storage.parquet_export", str(self._snapshot_path),
                           str(self.parquet_path), timeout=timeout, what="parquet export")

    # -- helpers -----------------------------------------------------------------------------

    def _heat_of(self, key: bytes) -> float:
        meta = self._index.get(key)
        return 0.0 if meta is None else self._heat.value(meta.heat, meta.heat_epoch)

    def _touch(self, meta: BlockMeta) -> None:
        meta.heat, meta.heat_epoch = self._heat.touch(meta.heat, meta.heat_epoch)
        meta.access_count += 1
        meta.last_access = time.time()

    def _tier_of(self, key: bytes, meta: BlockMeta) -> str:
        if meta.remote:
            return "remote"
        return "memory" if key in self._memory else "disk"

    def _write_journal(self, *record: Any, required: bool = False) -> None:
        """Journal a change (not yet durable; see ``_sync_journal``). The journal mostly
        speeds up restarts (an unclean start rebuilds from disk), so a failed append is
        logged and skipped, unless ``required``: then it raises StoreError.
        """
        if self._journal is None and not self._closed:
            self._open_journal()  # it failed at open (full disk): space may be back
        try:
            if self._journal is None:
                raise StoreError(f"the index journal {self._journal_path} is not open")
            self._journal.append(*record)
        except (OSError, StoreError) as exc:
            if required:
                raise exc if isinstance(exc, StoreError) else self._os_error(
                    exc, "cannot append to the index journal") from exc
            log.warning("index journal append failed; the next start will rebuild from disk",
                        op=record[0], error=str(exc))

    async def _sync_journal(self) -> None:
        """Make the journal durable; for records a crash recovery relies on (any ``sync``
        setting), before the action they describe."""
        journal = self._journal
        if journal is None:
            raise StoreError(f"the index journal {self._journal_path} is not open")
        try:
            await trio.to_thread.run_sync(journal.sync)
        except OSError as exc:
            raise self._os_error(exc, "cannot fsync the index journal") from exc

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the store is closed")

    async def _wait_inflight(self, key: bytes) -> None:
        while (event := self._inflight.get(key)) is not None:
            await event.wait()

    def _forget(self, key: bytes, meta: BlockMeta) -> None:
        """Drop a block from the index and memory (the file is the caller's business)."""
        self._index.pop(key, None)
        self._memory.discard(key)
        if not meta.remote:
            self._used -= meta.size
        self._write_journal("del", key)

    # -- blocks ------------------------------------------------------------------------------

    async def put(self, cid: CidLike, data: bytes, *, hashed: bool = False) -> bool:
        """Store a block after checking it hashes to ``cid``; False if it was already here.

        ``hashed=True`` skips the check when ``cid`` was itself computed from these bytes
        (Bitswap builds a received block's CID from its payload prefix and the bytes' hash).
        Raises HashMismatchError (nothing stored) or StoreFullError.
        """
        self._check_open()
        cid = to_cid(cid)
        key = key_of(cid)
        if len(data) > MAX_BLOCK_SIZE:
            raise StoreError(f"block {cid} is {len(data)} bytes; the limit is {MAX_BLOCK_SIZE}")
        await self._wait_inflight(key)
        self._check_open()  # close() may have run while we waited
        meta = self._index.get(key)
        if meta is not None and not meta.remote:
            self._touch(meta)
            return False
        self._inflight[key] = event = trio.Event()
        try:
            if self._used + len(data) > self.config.max_size:
                await self._collect(self.config.max_size - len(data))
                if self._used + len(data) > self.config.max_size:
                    raise StoreFullError(
                        f"store full: {self._used} of {self.config.max_size} bytes are pinned "
                        "or in use; unpin data, or raise storage.max_size"
                    )

            def verify_and_write() -> None:
                if not hashed:
                    verify(cid, data)
                self._disk.write(key, data)

            async with self._threads:
                await trio.to_thread.run_sync(verify_and_write)
            now = time.time()
            if meta is None:
                meta = BlockMeta(cid=str(cid), size=len(data), first_access=now,
                                 last_access=now)
                self._index[key] = meta
            else:
                meta.remote = False
                self._write_journal("remote", key, False)
            self._used += len(data)
            self._write_journal("put", key, meta.cid, meta.size, now)
            self._touch(meta)
            self._memory.put(key, data, heat=meta.heat)
            for listener in self._listeners:
                listener(cid, len(data))
            return True
        finally:
            del self._inflight[key]
            event.set()

    async def _settled(self, cid: CidLike) -> tuple[CID, bytes, BlockMeta | None]:
        """(cid, key, meta) once no put or delete of that block is in flight."""
        self._check_open()
        cid = to_cid(cid)
        key = key_of(cid)
        await self._wait_inflight(key)
        self._check_open()  # close() may have run while we waited
        return cid, key, self._index.get(key)

    async def get(self, cid: CidLike) -> bytes:
        """The block's bytes, verified. Raises BlockNotFoundError."""
        cid, key, meta = await self._settled(cid)
        if meta is None:
            raise BlockNotFoundError(str(cid))
        self._touch(meta)
        return await self._read(cid, key, meta)

    async def _read(self, cid: CID, key: bytes, meta: BlockMeta) -> bytes:
        """Memory, then disk, then remote; without counting an access (pin walks use it)."""
        data = self._memory.get(key)
        if data is not None:
            return data
        if meta.remote:
            return await self._get_remote(cid, key, meta)
        self._disk_stats.lookups += 1
        async with self._threads:
            data, corrupt = await trio.to_thread.run_sync(self._disk.read_verified, key)
        if data is None:
            if self._index.get(key) is not meta:
                raise BlockNotFoundError(str(cid))  # deleted while we read
            if meta.remote:  # moved to the remote tier while we read
                return await self._get_remote(cid, key, meta)
            self._forget(key, meta)
            if corrupt:
                log.error("corrupt block quarantined; reported as missing", cid=str(cid),
                          path=str(self._disk.quarantine_dir))
            else:
                log.warning("block file vanished from disk", cid=str(cid))
            raise BlockNotFoundError(str(cid))
        self._disk_stats.hits += 1
        self._memory.put(key, data, heat=self._heat_of(key))
        return data

    async def _get_remote(self, cid: CID, key: bytes, meta: BlockMeta) -> bytes:
        self._remote_stats.lookups += 1
        data = await self.remote.fetch(cid)
        if data is None:
            raise BlockNotFoundError(str(cid))
        verify(cid, data)
        self._remote_stats.hits += 1
        self._memory.put(key, data, heat=self._heat_of(key))
        return data

    async def has(self, cid: CidLike) -> bool:
        meta = self._index.get(key_of(to_cid(cid)))
        return meta is not None and not meta.remote

    def is_remote(self, cid: CidLike) -> bool:
        """Evicted to the remote tier: known, pinned, held elsewhere; no I/O."""
        meta = self._index.get(key_of(to_cid(cid)))
        return meta is not None and meta.remote

    def local_size(self, cid: CidLike) -> int | None:
        """Size of a block held locally (memory or disk), else None; no I/O."""
        meta = self._index.get(key_of(to_cid(cid)))
        return None if meta is None or meta.remote else meta.size

    def is_local(self, cid: CidLike) -> bool:
        return self.local_size(cid) is not None

    def add_pin_listener(self, listener: Callable[[CID, bool], None]) -> None:
        """Called with (root, True) after a pin and (root, False) after an unpin."""
        self._pin_listeners.append(listener)

    def add_listener(self, listener: Callable[[CID, int], None]) -> None:
        """Called with (cid, size) after each new block is stored (Bitswap serves waiters)."""
        self._listeners.append(listener)

    async def size(self, cid: CidLike) -> int:
        meta = self._index.get(key_of(to_cid(cid)))
        if meta is None:
            raise BlockNotFoundError(str(cid))
        return meta.size

    async def delete(self, cid: CidLike) -> bool:
        """Remove an unpinned block; False if absent. Raises PinnedBlockError."""
        cid, key, meta = await self._settled(cid)
        if meta is None:
            return False
        if meta.pins:
            raise PinnedBlockError(f"block {cid} is pinned; unpin it first")
        await self._remove([key])
        return True

    async def _remove(self, keys: list[bytes]) -> int:
        """Forget blocks, then unlink their files; others wait on the in-flight events."""
        freed = 0
        events = {}
        for key in keys:
            meta = self._index.get(key)
            if meta is None:
                continue
            freed += 0 if meta.remote else meta.size
            self._forget(key, meta)
            self._inflight[key] = events[key] = trio.Event()
        try:
            async with self._threads:
                await trio.to_thread.run_sync(lambda: [self._disk.delete(k) for k in events])
        finally:
            for key, event in events.items():
                del self._inflight[key]
                event.set()
        return freed

    async def __aiter__(self) -> AsyncIterator[CID]:
        for key, meta in list(self._index.items()):
            if key in self._index and not meta.remote:
                yield to_cid(meta.cid)

    def __len__(self) -> int:
        return len(self._index)

    # -- pins --------------------------------------------------------------------------------

    def pins(self) -> dict[str, PinMode]:
        return dict(self._pins.roots)

    def is_pinned(self, cid: CidLike) -> bool:
        meta = self._index.get(key_of(to_cid(cid)))
        return meta is not None and meta.pins > 0

    async def dag_keys(self, root: CidLike) -> list[bytes]:
        """Store keys of a whole DAG held here (locally or remotely); BlockNotFoundError if a
        block is missing. The remote tier uses it to know which blocks a remote pin covers."""
        self._check_open()
        return await self._dag_keys(to_cid(root), True)

    async def _dag_keys(self, root: CID, recursive: bool) -> list[bytes]:
        """Keys of the root and (recursively) every block it links to; all must be here."""
        seen: dict[bytes, None] = {}
        stack = [root]
        while stack:
            cid = stack.pop()
            key = key_of(cid)
            if key in seen:
                continue
            if key not in self._index:
                raise BlockNotFoundError(
                    str(cid), f"in the DAG of {root}; fetch the whole DAG before pinning it"
                ) if cid != root else BlockNotFoundError(str(cid))
            seen[key] = None
            if recursive and cid.codec.code == DAG_PB:
                data = await self._read(cid, key, self._index[key])
                try:
                    stack.extend(to_cid(link.cid) for link in dagpb.decode(data, str(cid)).links)
                except CodecError as exc:
                    raise StoreError(str(exc)) from exc
        return list(seen)

    async def pin(self, cid: CidLike, recursive: bool = True) -> None:
        """Pin a block (direct) or a whole DAG (recursive); persisted before returning."""
        self._check_open()
        cid = to_cid(cid)
        mode: PinMode = "recursive" if recursive else "direct"
        async with self._pin_lock:
            current = self._pins.roots.get(str(cid))
            if current == mode or (current == "recursive" and not recursive):
                return
            keys = await self._dag_keys(cid, recursive)
            old = [] if current is None else await self._dag_keys(cid, current == "recursive")
            if any(key not in self._index for key in keys):  # GC ran during the walk
                raise BlockNotFoundError(str(cid), "part of its DAG was collected while "
                                         "pinning; add it again")
            # Counted first so GC spares the blocks while the pin set is written.
            self._count_pins(keys, +1)
            try:
                await self._save_pins({**self._pins.roots, str(cid): mode})
            except BaseException:
                self._count_pins(keys, -1)
                raise
            self._count_pins(old, -1)
            self._pins.roots[str(cid)] = mode
        for listener in self._pin_listeners:
            listener(cid, True)

    async def unpin(self, cid: CidLike) -> None:
        self._check_open()
        cid = to_cid(cid)
        async with self._pin_lock:
            mode = self._pins.roots.get(str(cid))
            if mode is None:
                raise StoreError(f"{cid} is not pinned")
            await self._save_pins({k: v for k, v in self._pins.roots.items() if k != str(cid)})
            del self._pins.roots[str(cid)]
            with contextlib.suppress(BlockNotFoundError):
                self._count_pins(await self._dag_keys(cid, mode == "recursive"), -1)
        for listener in self._pin_listeners:
            listener(cid, False)

    def _count_pins(self, keys: list[bytes], delta: int) -> None:
        for key in keys:
            meta = self._index.get(key)
            if meta is not None:
                meta.pins = max(0, meta.pins + delta)

    async def _save_pins(self, roots: dict[str, PinMode]) -> None:
        """Persist a new pin set (durably) before the caller adopts it."""
        try:
            await trio.to_thread.run_sync(self._pins.save, roots)
        except OSError as exc:
            raise self._os_error(exc, "cannot save the pin set") from exc

    async def _recount_pins(self) -> None:
        for meta in self._index.values():
            meta.pins = 0
        for cid_text, mode in list(self._pins.roots.items()):
            try:
                for key in await self._dag_keys(to_cid(cid_text), mode == "recursive"):
                    self._index[key].pins += 1
            except StoreError as exc:
                log.error("pinned DAG incomplete in the store", cid=cid_text, error=str(exc))

    # -- GC ----------------------------------------------------------------------------------

    async def gc(self, *, full: bool = False) -> GcResult:
        """Remove unpinned blocks, coldest first, down to the watermark (or all, with full)."""
        target = 0 if full else int(self.config.max_size * self.config.gc_watermark)
        return await self._collect(target)

    async def _collect(self, target: int) -> GcResult:
        result = GcResult()
        async with self._gc_lock:
            if self._used > target:
                candidates = sorted(
                    (self._heat.value(m.heat, m.heat_epoch), m.last_access, k)
                    for k, m in self._index.items() if not m.pins and not m.remote
                )
                victims, excess = [], self._used - target
                for _, _, key in candidates:
                    if excess <= 0:
                        break
                    if key not in self._inflight:
                        victims.append(key)
                        excess -= self._index[key].size
                result.removed = len(victims)
                result.freed = await self._remove(victims)
            if self._used > target:
                await self._evict_pinned_to_remote(target, result)
        result.remaining = self._used
        if result.removed or result.evicted_to_remote:
            log.info("gc done", removed=result.removed, freed=result.freed,
                     to_remote=result.evicted_to_remote, remaining=result.remaining)
        return result

    async def _evict_pinned_to_remote(self, target: int, result: GcResult) -> None:
        if isinstance(self.remote, NoRemoteTier):
            return
        candidates = sorted(
            (self._heat.value(m.heat, m.heat_epoch), k)
            for k, m in self._index.items() if m.pins and not m.remote
        )
        for _, key in candidates:
            if self._used <= target:
                return
            meta = self._index.get(key)
            if meta is None or meta.remote or key in self._inflight:
                continue
            if to_cid(meta.cid).codec.code == DAG_PB:
                # DAG nodes stay: pins are recounted at open by walking them, without the
                # network. Raw leaves carry nearly all the bytes anyway.
                continue
            if not await self.remote.is_safely_held(to_cid(meta.cid)):
                continue
            # Not while a snapshot is written: one that captured the block on disk would cut
            # its record from the journal, and a crash would forget the block.
            async with self._snapshot_lock:
                # Other tasks ran during the awaits: decide again, then hold the block so a
                # put, delete or read of it waits until its file is gone and the index says so.
                if (self._index.get(key) is not meta or meta.remote or not meta.pins
                        or key in self._inflight or self._used <= target):
                    continue
                self._inflight[key] = event = trio.Event()
                try:
                    try:
                        # Durable before the file goes, or a crash forgets the block lives
                        # remotely. Self-contained (cid, size) for a damaged snapshot.
                        self._write_journal("remote", key, True, meta.cid, meta.size,
                                            required=True)
                        await self._sync_journal()
                    except StoreError as exc:
                        result.errors.append(f"{meta.cid}: {exc}")
                        continue
                    meta.remote = True
                    self._used -= meta.size
                    self._memory.discard(key)
                    await trio.to_thread.run_sync(self._disk.delete, key)
                finally:
                    del self._inflight[key]
                    event.set()
            result.evicted_to_remote += 1

    # -- verify, stats -----------------------------------------------------------------------

    async def verify(self) -> VerifyResult:
        """Re-hash every local block; corrupt ones are quarantined and dropped from the index."""
        result = VerifyResult()
        for key, meta in list(self._index.items()):
            if meta.remote or self._index.get(key) is not meta:
                continue
            async with self._threads:
                data, corrupt = await trio.to_thread.run_sync(self._disk.read_verified, key)
            result.checked += 1
            if data is None and self._index.get(key) is meta and not meta.remote:
                (result.corrupt if corrupt else result.missing).append(meta.cid)
                self._forget(key, meta)
                log.error("verify: block bad", cid=meta.cid, corrupt=corrupt)
        return result

    def stats(self) -> StoreStats:
        mem = self._memory.stats
        memory = TierStats(blocks=len(self._memory), bytes=self._memory.bytes_used,
                           hits=mem.hits, lookups=mem.hits + mem.misses)
        local = [m for m in self._index.values() if not m.remote]
        remote = [m for m in self._index.values() if m.remote]
        disk = TierStats(blocks=len(local), bytes=self._used, hits=self._disk_stats.hits,
                         lookups=self._disk_stats.lookups)
        far = TierStats(blocks=len(remote), bytes=sum(m.size for m in remote),
                        hits=self._remote_stats.hits, lookups=self._remote_stats.lookups)
        return StoreStats(memory=memory, disk=disk, remote=far, max_size=self.config.max_size,
                          memory_budget=self.config.memory_size, pins=len(self._pins.roots),
                          pinned_blocks=sum(1 for m in self._index.values() if m.pins))

    def heat(self, cid: CidLike) -> float:
        return self._heat_of(key_of(to_cid(cid)))

    # -- service -----------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Periodic GC and snapshots for as long as the node runs; closes the store at the end."""
        try:
            async with trio.open_nursery() as nursery:
                if self.config.parquet_export:
                    nursery.start_soon(self._export_parquet)
                nursery.start_soon(self._every, self.config.gc_period, self.gc)
                nursery.start_soon(self._every, self.config.snapshot_period, self.snapshot)
                task_status.started()
        finally:
            try:
                await self.close()
            except (StoreError, OSError) as exc:  # e.g. a full disk: the journal still holds it
                log.error("store closed uncleanly; the next start replays its journal",
                          error=str(exc))

    @staticmethod
    async def _every(period: float, job: Callable[[], Any]) -> None:
        while True:
            await trio.sleep(period)
            try:
                await job()
            except Exception as exc:  # the edge of a periodic job: logged, tried next period
                log.error("periodic store job failed", job=getattr(job, "__name__", "?"),
                          error=f"{type(exc).__name__}: {exc}"[:500],
                          exc_info=not isinstance(exc, (StoreError, OSError)))


__all__ = ["GcResult", "StoreConfig", "StoreStats", "TieredStore", "VerifyResult"]
