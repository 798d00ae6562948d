"""GC and pack compaction: unpinned blocks removed coldest first down to the watermark, pinned
raw leaves evicted to the remote tier once it holds them safely, and packs rewritten: those
whose live bytes fell below ``COMPACT_LIVE`` (``COMPACT_SPARSE`` if holes freed their dead
bytes), and, once the packs' dead bytes still holding disk pass ``COMPACT_PRESSURE`` of
``max_size``, those holding the largest share of them.

Dead bytes a hole already freed (a deleted record is punched out of its pack) are not counted:
a pack's dead bytes on disk are what it takes (st_blocks, kept by packs.py) beyond its live
records. A small record deleted on its own frees nothing by its hole (only whole filesystem
blocks are freed), so deletes spread over packs leave them mostly live and still holding
their dead bytes: the pressure rule is what bounds that.

Both work in slices under ``_gc_lock`` (a put over budget collects between two of them) and
never take a block stored after GC began, one being written, or one an add or a pin in
progress holds (``hold()``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from ..errors import StoreError, StoreFullError
from ..logs import get_logger
from .blocks import hash_matches, to_cid
from .core import DAG_PB, _take_page
from .packs import record_span
from .reads import ReadPath
from .remote import NoRemoteTier

log = get_logger(__name__)

COMPACT_LIVE = 0.5  # GC rewrites a pack whose live bytes fell below this share of it
COMPACT_HELD = 0.25  # ... and whose dead bytes still hold more than this share on disk
COMPACT_SPARSE = 0.125  # ... or, holes or not, whose live bytes fell below this share
COMPACT_PRESSURE = 0.25  # dead bytes on disk past this share of max_size: compact the packs
COMPACT_SHARE = 0.125  # holding the largest share of theirs (not under this) down to half it
COMPACT_MIN = 1 << 20  # the active pack is rolled for compaction only past this size
COMPACT_ROWS = 1000  # records copied per compaction slice, at most
COMPACT_BYTES = 8 << 20  # bytes copied per compaction slice, at most (one record at least)


@dataclass
class GcResult:
    removed: int = 0
    freed: int = 0
    evicted_to_remote: int = 0
    remaining: int = 0
    errors: list[str] = field(default_factory=list)
    moved: int = 0  # live packed blocks compaction copied to the active pack
    packs_removed: int = 0  # pack files compaction emptied and unlinked
    reclaimed: int = 0  # bytes of those pack files


class Collector(ReadPath):
    """GC and compaction of ``TieredStore`` (compaction checks and quarantines the records it
    copies as a read does: hence on ``ReadPath``)."""

    async def gc(self, *, full: bool = False, evict: bool = True,
                 removed: Callable[[list[bytes]], None] | None = None) -> GcResult:
        """Remove unpinned blocks, coldest first, down to the watermark (or all, with full).

        ``evict=False`` leaves pinned blocks local even when a remote tier could take them
        (Kubo's GC only ever removes what is unpinned). ``removed`` is called with the keys
        of each slice as it goes (Kubo's RPC lists every block it removed)."""
        target = 0 if full else int(self.config.max_size * self.config.gc_watermark)
        result = await self._collect(target, full=full, evict=evict, removed=removed)
        await self._compact(result)  # _gc_lock taken a slice at a time
        return result

    def _compact_soon(self) -> None:
        """A put over budget deletes, and a deleted small packed block's bytes stay on disk
        until a compaction (a hole frees only whole filesystem blocks): under churn the packs
        would grow past ``max_size`` until the next periodic GC. Once their dead bytes still
        on disk pass ``COMPACT_PRESSURE`` of ``max_size``, one compaction starts in the
        background (one at a time; it takes the GC lock a slice at a time, so puts go on).
        Dead bytes their holes freed do not count: they started a pass after every put over
        budget that found nothing to do."""
        if self._compacting or self._nursery is None:
            return
        if sum(self._dead_on_disk(self._db.packs()).values()) <= \
                self.config.max_size * COMPACT_PRESSURE:
            return
        self._compacting = True

        async def compact() -> None:
            try:
                await self._compact(GcResult())
            finally:
                self._compacting = False

        self._nursery.start_soon(self._guarded, compact)

    async def _compact(self, result: GcResult) -> None:
        """Rewrite the packs ``_to_compact`` picks (and those with nothing live): their live
        records are copied to the active pack (fsynced), the new places committed in one
        transaction a slice, the old records punched out, and the emptied pack unlinked. A
        reader that holds an old place reads it (its descriptor stays open), or reads zeros
        or nothing there and reads the row again."""
        async with self._gc_lock:
            packs = self._db.packs()
            chosen = await trio.to_thread.run_sync(self._to_compact, packs)
            end, live = packs.get(self._packs.active, (0, 0))
            if end and (not live or (end >= COMPACT_MIN and self._packs.active in chosen)):
                await trio.to_thread.run_sync(self._packs.roll)  # so the active one may go
        started = time.time()
        for pack, (end, live) in sorted(packs.items()):
            if end < 0 or self._packs.busy(pack) or (live and pack not in chosen):
                continue
            try:
                await self._compact_pack(pack, end, result)
            except StoreError as exc:
                result.errors.append(f"compaction of pack {pack}: {exc}")
                log.error("pack compaction failed; tried again at the next GC", pack=pack,
                          error=str(exc))
        if result.packs_removed:
            log.info("packs compacted", moved=result.moved, removed=result.packs_removed,
                     reclaimed=result.reclaimed, seconds=round(time.time() - started, 2))

    def _dead_on_disk(self, packs: dict[int, tuple[int, int]]) -> dict[int, int]:
        """Each pack's dead bytes still holding disk space: what it takes on disk up to its
        committed end beyond its live records (the allocation packs.py keeps: no stat once a
        pack was measured)."""
        out = {}
        for pack, (end, live) in packs.items():
            if end > 0:
                allocated = self._packs.allocated(pack)
                out[pack] = 0 if allocated is None else max(0, min(allocated, end) - live)
        return out

    def _pack_space(self) -> tuple[int, int, int, int]:
        """(packs, bytes up to their committed ends, dead bytes of those still holding disk,
        dead bytes whose holes gave their space back) for stats."""
        packs = {p: v for p, v in self._db.packs().items() if v[0] >= 0}
        total = sum(end for end, _ in packs.values())
        dead = sum(end - live for end, live in packs.values())
        held = sum(self._dead_on_disk(packs).values())
        return len(packs), total, held, dead - held

    def _to_compact(self, packs: dict[int, tuple[int, int]]) -> set[int]:
        """The packs with live records worth copying out (worker thread).

        Under ``COMPACT_LIVE`` live, if their dead bytes still hold over ``COMPACT_HELD`` of
        theirs on disk: a pack of dead 256 KiB records punched out takes little more than its
        live bytes, and copying those would free nothing. And once the dead bytes on disk
        pass ``COMPACT_PRESSURE`` of ``max_size``, the packs holding the largest share of
        their size (at least ``COMPACT_SHARE``) until half that is left: small records
        deleted one by one all over the packs leave each mostly live, and their dead bytes
        would otherwise stay (up to as many as the live ones) until the packs fell under half
        live, and start a pass that did nothing after every put over budget.

        And under ``COMPACT_SPARSE`` live whatever its holes freed: copying out at most an
        eighth of a pack removes a file that otherwise stayed, mostly holes, for as long as
        any of its blocks lived (a soak of adds, unpins and GCs left one a minute, each 64 MiB
        long and 1-4% live); so the packs number at most one per eighth of a pack of live bytes."""
        dead = self._dead_on_disk(packs)
        chosen = set()
        for pack, held in dead.items():
            end, live = packs[pack]
            if live < end * COMPACT_SPARSE or (
                    live < end * COMPACT_LIVE and held > (end - live) * COMPACT_HELD):
                chosen.add(pack)
        pressure = self.config.max_size * COMPACT_PRESSURE
        left = sum(held for pack, held in dead.items() if pack not in chosen)
        if left > pressure:
            for pack in sorted(dead, key=lambda p: dead[p] / packs[p][0], reverse=True):
                if left <= pressure / 2 or dead[pack] < packs[pack][0] * COMPACT_SHARE:
                    break
                if pack not in chosen:
                    chosen.add(pack)
                    left -= dead[pack]
        return chosen

    async def _compact_pack(self, pack: int, end: int, result: GcResult) -> None:
        """Slice by slice, each under ``_gc_lock`` (a put over budget collects between
        two slices instead of waiting for the whole pass); another GC may have emptied the
        pack meanwhile."""
        after = -1
        lead = 0  # where the stretch of the next slice's rows starts (the last one's end)
        skipped = False
        while True:
            async with self._gc_lock:
                if self._pack_gone(pack):
                    return  # emptied by another GC meanwhile
                rows = self._db.pack_rows(pack, after, COMPACT_ROWS)
                if not rows:
                    break
                rows = _bounded(rows, COMPACT_BYTES)  # held in memory: 64 MiB at 64 KiB
                after = rows[-1][1]
                todo = [r for r in rows if r[0] not in self._inflight]
                skipped |= len(todo) < len(rows)
                await self._compact_slice(pack, rows, lead, todo, result)
                lead = record_span(*rows[-1])[1]
            await trio.sleep(0)
        if skipped:  # a block being put or deleted: the next GC finishes this pack
            async with self._threads:  # (past the last row, all is dead)
                await trio.to_thread.run_sync(self._packs.punch_spans, [(pack, lead, end)])
            return
        async with self._gc_lock:
            if not self._pack_gone(pack) and await self._write(self._db.drop_pack, pack):
                await trio.to_thread.run_sync(self._packs.unlink, pack)
                result.packs_removed += 1
                result.reclaimed += end

    async def _punch_moved(self, pack: int, rows: list[tuple[bytes, int, int]], lead: int,
                           moves: list[tuple[bytes, int, int, int, int, int]],
                           all_landed: bool) -> None:
        """After a slice's moves are committed, punch out what is dead now: the old records
        of the moves that landed, with the dead records on either side of them up to the
        next live ones (``rows``, the slice's rows by offset, has every live row from
        ``lead``, where the slice's stretch starts, on), and the copies of those that did
        not (their block was deleted, or deleted and stored again, between the copy and the
        commit: deletes do not take the GC lock; no row names those copies). The old pack
        is unlinked once every slice is done, but a slice left for the next GC (a block being
        written or removed), an error or a crash kept all its moved records' bytes until
        then, and a pack's worth of copies held twice its live bytes on disk meanwhile. Not
        after a commit that failed on an I/O error: whether it landed is not known."""
        landed = {m[0] for m in moves}
        spans = []
        if not all_landed:  # (rare: not worth a thread)
            for key, size, _, _, new, new_off in moves:
                meta = self._db.get(key)
                if meta is None or meta.remote or (meta.pack, meta.off) != (new, new_off):
                    landed.discard(key)
                    spans.append((new, *record_span(key, new_off, size)))
        for i, (key, off, size) in enumerate(rows):
            if key in landed:
                end = record_span(*rows[i + 1])[0] if i + 1 < len(rows) else off + size
                spans.append((pack, record_span(*rows[i - 1])[1] if i else lead, end))
        async with self._threads:
            await trio.to_thread.run_sync(self._packs.punch_spans, spans)

    def _pack_gone(self, pack: int) -> bool:
        end = self._db.pack_end(pack)
        return end is None or end < 0

    async def _compact_slice(self, pack: int, rows: list[tuple[bytes, int, int]], lead: int,
                             todo: list[tuple[bytes, int, int]], result: GcResult) -> None:
        """Copy ``todo`` (key, offset, size; of the slice's ``rows``, those not being
        written or removed) of ``pack`` to the active pack, commit the moves, punch out what
        they left dead (from ``lead``, the end of the slice before); records unreadable or
        corrupt are dropped (``_gc_lock`` held)."""

        def copy(todo: list[tuple[bytes, int, int]] = todo) -> tuple[
                int | None, list[tuple[bytes, int, int, int, int, int]],
                dict[bytes, bool]]:
            items, bad = [], {}  # bad: key -> corrupt (else missing)
            for key, off, size in todo:
                data = self._packs.read(pack, off, size)
                if data is None:
                    bad[key] = False  # the pack is gone or too short
                elif hash_matches(key, data):
                    items.append((key, off, data))
                elif self._packs.punched(data):
                    bad[key] = False  # punched out: deleted meanwhile (not under the lock)
                else:
                    self._quarantine_copy(key, data)
                    bad[key] = True
            if not items:
                return None, [], bad
            # fsynced whatever [storage] sync says: the old pack, durable, goes next
            new, offs = self._packs.append([(k, d) for k, _, d in items], durable=True)
            return new, [(k, len(d), pack, o, new, n)
                         for (k, o, d), n in zip(items, offs, strict=True)], bad

        async with self._threads:
            try:
                new, moves, bad = await trio.to_thread.run_sync(copy)
            except OSError as exc:
                raise self._os_error(exc, f"cannot compact pack {pack}") from exc
        try:
            if moves:
                with trio.CancelScope(shield=True):  # copies fsynced: commit them
                    try:
                        moved = await self._write(self._db.move, moves)
                    except StoreFullError:
                        # A full disk (SQLITE_FULL) left the commit undone, unlike an I/O
                        # error that may or may not have: the copies no row names go.
                        await self._punch_moved(pack, rows, lead, moves, False)
                        raise
                    result.moved += moved
                    await self._punch_moved(pack, rows, lead, moves, moved == len(moves))
        finally:
            if new is not None:
                self._packs.settle(new)
        if bad:  # checked again by key: a row may have changed since
            gone = [k for k in bad if (m := self._db.get(k)) is not None and m.pack == pack]
            corrupt = sum(bad[k] for k in gone)
            if corrupt:
                log.error("corrupt packed blocks found by compaction; quarantined and "
                          "dropped", pack=pack, blocks=corrupt,
                          path=str(self._disk.quarantine_dir))
            if len(gone) > corrupt:
                log.error("packed blocks missing (pack file gone or cut short) found by "
                          "compaction; dropped", pack=pack, blocks=len(gone) - corrupt)
            if gone:
                await self._drop(gone)

    async def _collect(self, target: int, *, full: bool = False, evict: bool = True,
                       removed: Callable[[list[bytes]], None] | None = None) -> GcResult:
        """In slices: each page of candidates is re-checked (not written to, not held, not
        pinned: the delete itself re-checks the count) and removed, then the loop runs."""
        result = GcResult()
        async with self._gc_lock:
            started = time.time()
            if self._used > target:
                await self._flush_touches()
                pages = self._db.collect_candidates(coldest_first=not full, before=started)
                try:
                    while self._used > target:
                        page = await trio.to_thread.run_sync(_take_page, pages)
                        if page is None:
                            break
                        excess = self._used - target
                        victims = []
                        for key, size in page:
                            if excess <= 0:
                                break
                            if key not in self._inflight and key not in self._holds:
                                victims.append(key)
                                excess -= size
                        if victims:
                            gone = await self._remove(victims, only_unpinned=True)
                            result.removed += len(gone)
                            result.freed += sum(size for _, size in gone)
                            if removed is not None and gone:
                                removed([key for key, _ in gone])
                        await trio.sleep(0)
                finally:
                    await trio.to_thread.run_sync(pages.close)
            if evict and self._used > target:
                await self._evict_pinned_to_remote(target, result)
        result.remaining = self._used
        if result.removed or result.evicted_to_remote:
            log.info("gc done", removed=result.removed, freed=result.freed,
                     to_remote=result.evicted_to_remote, remaining=result.remaining,
                     seconds=round(time.time() - started, 2))
        return result

    async def _evict_pinned_to_remote(self, target: int, result: GcResult) -> None:
        if isinstance(self.remote, NoRemoteTier):
            return
        pages = self._db.pinned_local_coldest()
        try:
            while self._used > target:
                page = await trio.to_thread.run_sync(_take_page, pages)
                if page is None:
                    return
                for key, cid_text, size in page:
                    if self._used <= target:
                        return
                    cid = to_cid(cid_text)
                    if cid.codec.code == DAG_PB or key in self._inflight:
                        # DAG nodes stay: pins are walked without the network. Raw leaves
                        # carry nearly all the bytes anyway.
                        continue
                    if not await self.remote.is_safely_held(cid):
                        continue
                    if key in self._inflight:
                        continue
                    self._inflight[key] = event = trio.Event()
                    try:
                        try:  # durable before the file goes (FULL sync for this commit)
                            moved = await self._write(self._db.set_remote, key)
                        except StoreError as exc:
                            result.errors.append(f"{cid}: {exc}")
                            continue
                        if moved is False:
                            continue
                        self._memory.discard(key)
                        if moved is True:  # its own file
                            await trio.to_thread.run_sync(self._disk.delete, key)
                        else:  # its pack record, dead bytes now
                            pack, off = moved
                            await trio.to_thread.run_sync(self._packs.punch,
                                                          [(pack, key, off, size)])
                    finally:
                        del self._inflight[key]
                        event.set()
                    result.evicted_to_remote += 1
        finally:
            await trio.to_thread.run_sync(pages.close)


def _bounded(rows: list[tuple[bytes, int, int]], limit: int) -> list[tuple[bytes, int, int]]:
    """The first of ``rows`` (key, offset, size) whose sizes add up to ``limit`` (one at
    least)."""
    total = 0
    for n, (_, _, size) in enumerate(rows):
        total += size
        if total > limit and n:
            return rows[:n]
    return rows
