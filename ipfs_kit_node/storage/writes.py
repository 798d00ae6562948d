"""Puts: a block is checked against its CID, written durably (appended to the active pack up
to ``pack_threshold`` bytes, else a file of its own) and indexed before ``put`` returns.

Concurrent puts are group-committed (one transaction and fsync for those under way at once);
``put_many`` writes a batch with one pack append and one transaction. A put over budget runs
GC first. Each key being written is claimed in ``_inflight``, so reads, GC and other puts of
it wait.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Sequence

import trio
from multiformats import CID

from ..cid import cid_from_bytes
from ..errors import StoreError, StoreFullError
from .blockdb import BlockMeta, Row, storage_error
from .blocks import CidLike, key_of, to_cid, verify
from .core import _Batch, _text
from .gc import Collector

MAX_BLOCK_SIZE = 4 * 1024 * 1024


class Writes(Collector):
    """Puts of ``TieredStore`` (a put over budget collects first: hence on ``Collector``)."""

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
        if await self._settled_here(key):
            return False
        self._inflight[key] = event = trio.Event()
        reserved = 0
        try:
            await self._make_room(len(data))
            reserved = len(data)

            def verify_and_write() -> tuple[int | None, int]:
                if not hashed:
                    verify(cid, data)
                if len(data) <= self.config.pack_threshold:
                    pack, (off,) = self._packs.append([(key, data)])
                    return pack, off
                self._disk.write(key, data)
                return None, 0

            async with self._threads:
                try:
                    pack, off = await trio.to_thread.run_sync(verify_and_write)
                except OSError as exc:
                    raise self._os_error(exc, f"cannot write block {cid}") from exc
            try:
                with trio.CancelScope(shield=True):  # the bytes are there: the row follows
                    await self._commit_put((key, bytes(cid), len(data), time.time(), pack,
                                            off))
            finally:
                if pack is not None:
                    self._packs.settle(pack)
            heat = self._touch(key, BlockMeta(_text(cid), len(data), 0.0, 0.0))
            self._memory.put(key, data, heat=heat)
            for listener in self._listeners:
                listener(cid, len(data))
            return True
        finally:
            self._reserved -= reserved
            del self._inflight[key]
            event.set()

    async def put_many(self, blocks: Sequence[tuple[CidLike, bytes]], *, hashed: bool = False
                       ) -> int:
        """Store several blocks as ``put`` does, with one batch of overlapped fsyncs and one
        index transaction for them all (an importer's or a CAR's blocks); returns how many
        were new. ``hashed`` as for ``put``. On an error none of the new ones is indexed."""
        self._check_open()
        todo: dict[bytes, tuple[CID, bytes]] = {}
        for cid_like, data in blocks:
            cid = cid_from_bytes(cid_like) if isinstance(cid_like, bytes) else \
                to_cid(cid_like)  # an upload's binary CIDs: the fast parser, same checks
            if len(data) > MAX_BLOCK_SIZE:
                raise StoreError(f"block {cid} is {len(data)} bytes; the limit is "
                                 f"{MAX_BLOCK_SIZE}")
            todo.setdefault(key_of(cid), (cid, data))
        for key in list(todo):
            if await self._settled_here(key):
                del todo[key]
        # Waiting on one key lets another put claim a key already checked: wait until none
        # of ours is in flight, re-checking the index, then claim them all with no await
        # between the last check and the claim (a key put by another task that then fails
        # is still ours to store).
        while (busy := next((key for key in todo if key in self._inflight), None)) is not None:
            if await self._settled_here(busy):
                del todo[busy]
        if not todo:
            return 0
        if len(todo) == 1:
            (cid, data), = todo.values()
            return int(await self.put(cid, data, hashed=hashed))
        events = {key: trio.Event() for key in todo}
        self._inflight.update(events)
        reserved = 0
        try:
            size = sum(len(data) for _, data in todo.values())
            await self._make_room(size)
            reserved = size

            places: dict[bytes, tuple[int | None, int]] = {}

            def verify_and_write() -> None:
                if not hashed:
                    for cid, data in todo.values():
                        verify(cid, data)
                small = [(key, data) for key, (_, data) in todo.items()
                         if len(data) <= self.config.pack_threshold]
                big = [(key, data) for key, (_, data) in todo.items()
                       if len(data) > self.config.pack_threshold]
                if small:  # one write and one fsync for all of them
                    pack, offs = self._packs.append(small)
                    places.update((key, (pack, off)) for (key, _), off in zip(small, offs,
                                                                               strict=True))
                if big:
                    try:
                        self._disk.write_many(big)
                    except BaseException:
                        if small:  # those records are dead bytes: their space goes back
                            self._packs.punch([(pack, key, places[key][1], len(data))
                                               for key, data in small])
                            self._packs.settle(pack)
                        raise

            async with self._threads:
                try:
                    await trio.to_thread.run_sync(verify_and_write)
                except OSError as exc:
                    raise self._os_error(exc, f"cannot write {len(todo)} blocks") from exc
            now = time.time()
            try:
                with trio.CancelScope(shield=True):  # the bytes are there: the rows follow
                    await self._commit_rows([(key, bytes(cid), len(data), now,
                                              *places.get(key, (None, 0)))
                                             for key, (cid, data) in todo.items()])
            finally:
                for pack in {p for p, _ in places.values() if p is not None}:
                    self._packs.settle(pack)
            for key, (cid, data) in todo.items():
                heat = self._touch(key, BlockMeta(_text(cid), len(data), 0.0, 0.0))
                self._memory.put(key, data, heat=heat)
                for listener in self._listeners:
                    listener(cid, len(data))
            return len(todo)
        finally:
            self._reserved -= reserved
            for key, event in events.items():
                del self._inflight[key]
                event.set()

    async def _settled_here(self, key: bytes) -> bool:
        """Wait out a write or removal of ``key`` under way, note it held (see hold()); True
        if it is then stored here (its heat touched), so there is nothing to write."""
        await self._wait_inflight(key)
        self._check_open()  # close() may have run while we waited
        self._note_held(key)
        meta = self._db.get(key)
        if meta is not None and not meta.remote:
            self._touch(key, meta)
            return True
        return False

    async def _make_room(self, size: int) -> None:
        """Reserve ``size`` bytes of ``max_size`` until the caller's rows are committed,
        collecting first if need be. Writes under way count: an upload stores two batches
        at once, and each collected for itself alone while the other's bytes landed, so one
        failed with "store full" beside unpinned blocks, or both fit and the store ended
        over budget."""
        limit = self.config.max_size
        collected = False
        while self._used + self._reserved + size > limit:
            # Again while that changes something: the target is set before the GC lock is
            # taken, and other writes may reserve or commit meanwhile.
            before = (self._used, self._reserved)
            done = await self._collect(limit - size - self._reserved)
            collected = True
            moved = done.removed or done.evicted_to_remote or \
                (self._used, self._reserved) != before
            if not moved and self._used + self._reserved + size > limit:
                raise StoreFullError(
                    f"store full: {size} bytes to write, and {self._used + self._reserved} "
                    f"of the {limit} of storage.max_size are pinned, held by an add under way "
                    "or being written; unpin data, or raise storage.max_size")
        if collected:
            self._compact_soon()
        self._reserved += size

    async def _commit_rows(self, rows: list[Row]) -> None:
        """Index a batch in one transaction; if that fails, its files must not linger."""
        async with self._db_lock:
            try:
                await trio.to_thread.run_sync(self._db.put_many, rows)
            except sqlite3.Error as exc:
                error = storage_error(exc, "cannot index the blocks", self.root)
            else:
                return
        await trio.to_thread.run_sync(self._unindexed, rows)
        raise error

    def _unindexed(self, rows: list[Row]) -> None:
        """Rows that could not be indexed (worker thread): their files must not linger, and
        their pack records (dead bytes) give their space back, on a full disk above all."""
        with contextlib.suppress(OSError):
            for row in rows:
                if row[4] is None:
                    self._disk.delete(row[0])
        self._packs.punch([(row[4], row[0], row[5], row[2]) for row in rows
                           if row[4] is not None])

    async def _commit_put(self, row: Row) -> None:
        """Group commit: the first put to get the writer commits every row queued by then."""
        batch = self._batch
        batch.rows.append(row)
        async with self._db_lock:
            if not batch.done:
                self._batch = _Batch()
                try:
                    await trio.to_thread.run_sync(self._db.put_many, batch.rows)
                except sqlite3.Error as exc:
                    batch.error = storage_error(exc, "cannot index the block", self.root)
                finally:
                    batch.done = True
        if batch.error is not None:
            await trio.to_thread.run_sync(self._unindexed, [row])
            raise batch.error
