"""The read path: memory, then disk (a block's own file or its pack record), then the remote
tier, every block verified against its CID whatever tier supplied it.

A read that finds a block gone or corrupt drops its row (and quarantines the bytes), so the
index never goes on naming it; one that misses a packed block compaction moved reads the row
again. ``read_soon`` starts disk reads on worker threads ahead of a file walk
(``PendingRead``). Also the lookups that need no file I/O (``is_local``, ``is_remote``...).
"""

from __future__ import annotations

import contextlib
from functools import partial
from typing import Any

import trio
from multiformats import CID

from ..errors import BlockNotFoundError, StoreBusyError, StoreError
from ..logs import get_logger
from .blockdb import BlockMeta
from .blocks import CidLike, hash_matches, key_of, to_cid, verify
from .core import StoreCore, _text

log = get_logger(__name__)

READ_RETRIES = 3  # a packed block moved by compaction while read: read again by key
IDENTITY = 0x00  # the identity multihash: the "digest" is the block itself


def inline_bytes(cid: CID) -> bytes | None:
    """An identity CID's block (its digest), else None. Such blocks (``add --inline``) are
    never stored or counted and always present, as in Kubo: their bytes are in the CID."""
    return bytes(cid.raw_digest) if cid.hashfun.code == IDENTITY else None


class ReadPath(StoreCore):
    """Reads and lookups of ``TieredStore``."""

    async def _settled(self, cid: CidLike) -> tuple[CID, bytes, BlockMeta | None]:
        """(cid, key, meta) once no put or delete of that block is in flight."""
        self._check_open()
        cid = to_cid(cid)
        key = key_of(cid)
        await self._wait_inflight(key)
        self._check_open()  # close() may have run while we waited
        meta = self._meta(key)
        if meta is not None:
            self._note_held(key)  # found: a hold (a pin fetch) keeps it until it pins
        return cid, key, meta

    async def get(self, cid: CidLike) -> bytes:
        """The block's bytes, verified. Raises BlockNotFoundError."""
        self._check_open()
        cid = to_cid(cid)
        if (inline := inline_bytes(cid)) is not None:
            return inline
        cid, key, meta = await self._settled(cid)
        if meta is None:
            raise BlockNotFoundError(str(cid))
        self._touch(key, meta)
        return await self._read(cid, key, meta)

    async def get_held(self, cid: CidLike, *, remote: bool = True) -> bytes | None:
        """The block's bytes, verified, if this node holds it (memory, disk, and with
        ``remote`` the remote tier), else None: one index lookup where asking first and then
        reading took two or three (Bitswap's getter asked is_remote, is_local, then get)."""
        self._check_open()
        cid = to_cid(cid)
        if (inline := inline_bytes(cid)) is not None:
            return inline
        cid, key, meta = await self._settled(cid)
        if meta is None or (meta.remote and not remote):
            return None
        self._touch(key, meta)
        return await self._read(cid, key, meta)

    def read_soon(self, cid: CID) -> PendingRead | None:
        """Start reading a block held here (memory or disk) and return the read under way, or
        None (not here, evicted to the remote tier, being written or deleted, or 8 disk reads
        already running): a file walk keeps a few under way, so that the disk reads and hash
        checks of the next blocks run on worker threads (file reads and hashlib release the
        GIL) while the event loop sends this one."""
        key = key_of(cid)
        if self._closed or key in self._inflight:
            return None
        if key in self._memory and key in self._touched:
            # In the memory tier, so held here (a block leaves it as it leaves the store), and
            # its heat is buffered: no index lookup (~5 us, a fifth of a file walk's block).
            data = self._memory.get(key)
            if data is not None:
                self._note_held(key)
                self._touch(key, None)
                return PendingRead(self, cid, key, data, None, self._removals)
        meta = self._meta(key)
        if meta is None or meta.remote:
            return None
        data = self._memory.get(key)
        pending = PendingRead(self, cid, key, data, meta, self._removals)
        if data is None:
            try:
                self._threads.acquire_on_behalf_of_nowait(pending)
            except trio.WouldBlock:
                return None
            self._disk_stats.lookups += 1
            token = trio.lowlevel.current_trio_token()

            def deliver(outcome: Any) -> None:  # on the worker thread
                with contextlib.suppress(trio.RunFinishedError):
                    token.run_sync_soon(pending._arrived, outcome)

            trio.lowlevel.start_thread_soon(partial(self._read_local, key, meta), deliver)
        self._note_held(key)
        self._touch(key, meta)
        return pending

    async def _read(self, cid: CID, key: bytes, meta: BlockMeta) -> bytes:
        """Memory, then disk, then remote; without counting an access (pin walks use it)."""
        data = self._memory.get(key)
        if data is not None:
            return data
        removals = self._removals
        if meta.remote:
            return await self._get_remote(cid, key, removals)
        self._disk_stats.lookups += 1
        async with self._threads:
            data, corrupt = await trio.to_thread.run_sync(self._read_local, key, meta)
        return await self._read_done(cid, key, meta, data, corrupt, removals)

    async def _read_done(self, cid: CID, key: bytes, meta: BlockMeta, data: bytes | None,
                         corrupt: bool, removals: int) -> bytes:
        """After a disk read begun when ``_removals`` was ``removals``: a block compaction
        moved meanwhile is read where it is now; one gone or corrupt is dropped from the
        index (and then missing); an intact one offered to the memory tier if still here."""
        now: BlockMeta | None = meta
        if data is None:
            data, corrupt, now = await self._read_disk(key, meta, tried=(data, corrupt))
        if data is None:
            if now is None:
                raise BlockNotFoundError(str(cid))  # deleted while we read
            if now.remote:  # moved to the remote tier while we read
                return await self._get_remote(cid, key, self._removals)
            await self._drop([key])
            if corrupt:
                log.error("corrupt block quarantined; reported as missing", cid=str(cid),
                          path=str(self._disk.quarantine_dir))
            else:
                log.warning("block file vanished from disk", cid=str(cid))
            raise BlockNotFoundError(str(cid))
        self._disk_stats.hits += 1
        self._offer_memory(key, data, removals)
        return data

    def _read_local(self, key: bytes, meta: BlockMeta) -> tuple[bytes | None, bool]:
        """(bytes, False) if intact, (None, False) if missing, (None, True) if corrupt
        (quarantined) — from the block's file or its pack record (worker thread)."""
        if meta.pack is None:
            return self._disk.read_verified(key)
        data = self._packs.read(meta.pack, meta.off, meta.size)
        if data is None:
            return None, False
        if hash_matches(key, data):
            return data, False
        if self._packs.punched(data):  # the block was deleted as we read
            return None, False
        self._quarantine_copy(key, data)
        return None, True

    def _quarantine_copy(self, key: bytes, data: bytes) -> None:
        """A copy of a corrupt pack record for inspection (worker thread); the record itself
        stays, dead once its row is dropped."""
        with contextlib.suppress(OSError):
            (self._disk.quarantine_dir / self._disk.path_for(key).name).write_bytes(data)

    async def _read_disk(self, key: bytes, meta: BlockMeta,
                         tried: tuple[bytes | None, bool] | None = None
                         ) -> tuple[bytes | None, bool, BlockMeta | None]:
        """Read a local block; if it is not where ``meta`` says, the row is read again (a
        compaction may have moved it, a delete or an eviction taken it): (bytes, corrupt,
        the row as it was when the read failed, else ``meta``). ``tried``: the outcome of a
        first read already made at ``meta``."""
        for _ in range(READ_RETRIES):
            if tried is not None:
                (data, corrupt), tried = tried, None
            else:
                async with self._threads:
                    data, corrupt = await trio.to_thread.run_sync(self._read_local, key, meta)
            if data is not None:
                return data, False, meta
            if key in self._inflight:
                await self._wait_inflight(key)
            now = self._db.get(key)
            if (now is None or now.remote or corrupt
                    or (now.pack, now.off) == (meta.pack, meta.off)):
                return None, corrupt, now
            meta = now  # moved: read it where it is now
        # Still moving after every retry: the block is there, only not readable right now
        # (reporting it missing would drop a good, maybe pinned, block).
        raise StoreBusyError(f"block {meta.cid} moved while read {READ_RETRIES} times; "
                             "try again")

    def _offer_memory(self, key: bytes, data: bytes, removals: int) -> None:
        """Offer a block read to the memory tier, unless it was removed (or is being removed)
        since its read began (``removals``, the count then)."""
        if removals == self._removals or (key not in self._inflight and self._db.exists(key)):
            self._memory.put(key, data, heat=self._heat_of(key))

    async def _get_remote(self, cid: CID, key: bytes, removals: int) -> bytes:
        self._remote_stats.lookups += 1
        data = await self.remote.fetch(cid)
        if data is None:
            raise BlockNotFoundError(str(cid))
        verify(cid, data)
        self._remote_stats.hits += 1
        self._offer_memory(key, data, removals)
        return data

    async def has(self, cid: CidLike) -> bool:
        return self.is_local(cid)

    def is_held(self, cid: CidLike) -> bool:
        """Local or evicted to the remote tier (one lookup for is_local or is_remote)."""
        return self._db.exists(key_of(to_cid(cid)))

    def is_remote(self, cid: CidLike) -> bool:
        """Evicted to the remote tier: known, pinned, held elsewhere; no file I/O."""
        return self._db.is_remote(key_of(to_cid(cid)))

    def local_size(self, cid: CidLike) -> int | None:
        """Size of a block held locally (memory or disk), else None; no file I/O."""
        return self._db.local_size(key_of(to_cid(cid)))

    def is_local(self, cid: CidLike) -> bool:
        return self.local_size(cid) is not None

    async def size(self, cid: CidLike) -> int:
        cid = to_cid(cid)
        if (inline := inline_bytes(cid)) is not None:
            return len(inline)
        meta = self._db.get(key_of(cid))
        if meta is None:
            raise BlockNotFoundError(str(cid))
        return meta.size


class PendingRead:
    """A block read started by ``TieredStore.read_soon``; ``await result()`` for its bytes
    (verified) or the error reading it raised.

    A block found corrupt (quarantined) or gone is dropped from the index and logged as soon
    as the read ends, in the store's background nursery, whether or not anyone awaits the
    result: a walk whose client left never does, and the index would go on naming a block
    whose file is gone."""

    def __init__(self, store: ReadPath, cid: CID, key: bytes, data: bytes | None,
                 meta: BlockMeta | None, removals: int) -> None:
        self._store = store
        self._cid = cid
        self._key = key
        self._meta = meta  # where a disk read looks (None: ``data`` is the block)
        self._removals = removals  # the store's count of removals when the read began
        self._data = data  # a memory-tier hit is ready at once
        self._outcome: Any = None
        self._event: trio.Event | None = None if data is not None else trio.Event()
        self._settled: trio.Event | None = None  # set once a bad block is dealt with
        self._error: BaseException | None = None

    def _arrived(self, outcome: Any) -> None:  # on the event loop
        self._store._threads.release_on_behalf_of(self)
        self._outcome = outcome
        assert self._event is not None
        value = getattr(outcome, "value", None)  # (data, corrupt), unless the read raised
        nursery = self._store.background
        if value is not None and value[0] is None and nursery is not None:
            self._settled = trio.Event()
            nursery.start_soon(self._settle, bool(value[1]))
        self._event.set()

    async def _settle(self, corrupt: bool) -> None:
        """Drop and log a block the read found bad; keep the answer for ``result``."""
        assert self._settled is not None
        try:
            assert self._meta is not None
            self._data = await self._store._read_done(self._cid, self._key, self._meta, None,
                                                      corrupt, self._removals)
        except BlockNotFoundError as exc:
            self._error = exc
        except Exception as exc:  # nobody may be awaiting: logged here
            log.error("dropping a bad block failed", cid=_text(self._cid),
                      error=f"{type(exc).__name__}: {exc}"[:500])
            self._error = exc
        finally:
            if self._data is None and self._error is None:  # cancelled: the store closes
                self._error = StoreError("the store is closed")
            self._settled.set()

    async def result(self) -> bytes:
        if self._data is not None:
            return self._data
        assert self._event is not None
        await self._event.wait()
        if self._settled is not None:
            await self._settled.wait()
            if self._error is not None:
                raise self._error
            assert self._data is not None
            return self._data
        data, corrupt = self._outcome.unwrap()
        assert self._meta is not None
        return await self._store._read_done(self._cid, self._key, self._meta, data, corrupt,
                                            self._removals)
