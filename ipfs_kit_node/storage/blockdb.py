"""The block index and the pin set, on disk: one SQLite database (``datastore/index.sqlite``).

Why SQLite (stdlib) and not the old in-memory dict: a dict entry cost ~800 B of RSS a block
(100,580 blocks raised RSS by 186 MiB); SQLite keeps rows on disk behind a page cache of fixed
size (``CACHE_KIB`` per connection), so memory is bounded by design, not by the block count.
LMDB would serve as well but is not in the standard library; bench/pins.py measures this one.
B-tree updates make adding or removing one pin cost the same at 100 and at 1,000,000 pins
(the old ``pins.json`` was rewritten whole on every change), and WAL mode lets the event loop
read while a worker thread commits.

Crash safety: every change is one transaction, so kill -9 (or a power loss, with
``synchronous=FULL``, the ``[storage] sync`` setting) leaves the old state or the new one,
never a mix: a pin and the reference counts of the blocks it covers move together. A restart
opens the file and reads one row of counters: no rescan.

Tables: ``blocks`` (multihash key, binary CID, size, remote flag, pin reference count, heat,
access times and count), ``pins`` (CID text, multihash key, mode, name, time) and
``counters`` (one row, kept in step in the same transactions); ``lost`` keeps the pin counts
of pinned blocks not stored: identity CIDs (their bytes are the CID) and blocks dropped
because their bytes were found corrupt or gone. The pins still cover those (``pin ls`` and
``pin verify`` say so, GC keeps them) and a dropped block's count returns to its row when it
is stored again (a fetch, a put). Reads happen on the event loop through a
read-only connection (a primary-key lookup is a few microseconds); writes run on worker
threads through the writer connection, one transaction at a time (the caller serialises).
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
import time
from collections.abc import Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..cid import cid_text as _cid_text
from ..errors import StoreError, StoreFullError
from .packs import HEADER, record_overhead, record_span

HEADER_SIZE = HEADER.size

PinMode = Literal["recursive", "direct"]
CACHE_KIB = 8 * 1024  # page cache per connection: the index's whole RAM budget
PAGE_ROWS = 1000  # rows per page when listing or collecting

SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (
    key BLOB PRIMARY KEY, cid BLOB NOT NULL, size INTEGER NOT NULL,
    remote INTEGER NOT NULL DEFAULT 0, pins INTEGER NOT NULL DEFAULT 0,
    heat REAL NOT NULL DEFAULT 0, epoch INTEGER NOT NULL DEFAULT 0,
    first REAL NOT NULL DEFAULT 0, last REAL NOT NULL DEFAULT 0,
    count INTEGER NOT NULL DEFAULT 0, pack INTEGER, off INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pins (
    cid TEXT PRIMARY KEY, key BLOB NOT NULL, mode TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '', created REAL NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS pins_by_key ON pins(key);
CREATE TABLE IF NOT EXISTS counters (
    id INTEGER PRIMARY KEY CHECK (id = 0), blocks INTEGER NOT NULL, bytes INTEGER NOT NULL,
    remote_blocks INTEGER NOT NULL, remote_bytes INTEGER NOT NULL,
    pinned_blocks INTEGER NOT NULL, pins INTEGER NOT NULL
);
INSERT OR IGNORE INTO counters VALUES (0, 0, 0, 0, 0, 0, 0);
CREATE TABLE IF NOT EXISTS packs (
    id INTEGER PRIMARY KEY, end INTEGER NOT NULL DEFAULT 0, live INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS lost (
    key BLOB PRIMARY KEY, cid BLOB NOT NULL, pins INTEGER NOT NULL
) WITHOUT ROWID;
"""
# After SCHEMA and the columns an older index lacks (see BlockDB.__init__).
PACK_INDEX = ("CREATE INDEX IF NOT EXISTS blocks_by_pack ON blocks(pack, off) "
              "WHERE pack IS NOT NULL")

INSERT_PIN = "INSERT OR REPLACE INTO pins (cid, key, mode, name, created) VALUES (?, ?, ?, ?, ?)"
#: A pin row as ``Pin``: its walk is the sign of its time (see ``WALK``).
PIN_COLUMNS = "cid, mode, name, created < 0"
COLUMNS = "key, cid, size, remote, pins, heat, epoch, first, last, count, pack, off"
#: A new local block's row: key, binary CID, size, time, pack id (None: its own file), the
#: data's offset in the pack.
Row = tuple[bytes, bytes, int, float, int | None, int]


@dataclass(slots=True)
class BlockMeta:
    """One row of ``blocks`` (a copy: changing it changes nothing stored)."""

    cid: str
    size: int
    first_access: float
    last_access: float
    heat: float = 0.0
    heat_epoch: int = 0
    access_count: int = 0
    pins: int = 0  # how many pins cover it (a recursive pin counts once per block)
    remote: bool = False  # evicted locally, held by the remote tier
    pack: int | None = None  # the pack holding it (packs.py), None: its own block file
    off: int = 0  # where its data starts in that pack


@dataclass
class Counters:
    blocks: int = 0  # local blocks
    bytes: int = 0  # local bytes
    remote_blocks: int = 0
    remote_bytes: int = 0
    pinned_blocks: int = 0
    pins: int = 0


#: How a pin's DAG is walked when its blocks are counted: 0, through dag-pb links only (pins
#: made before DAG-CBOR links were followed; uncounted the same way), 1, through the links of
#: every codec that has them (dag-pb, DAG-CBOR, DAG-JSON), as Kubo. Stored as the sign of the
#: pin row's time (negative: 1), not a column of its own: the version before writes its pin
#: rows as five values, which then still fit, and its pins read as 0, as it counted them.
WALK = 1


@dataclass(frozen=True)
class Pin:
    cid: str
    mode: PinMode
    name: str = ""
    walk: int = WALK


def _created(pin: Pin) -> float:
    """A pin row's time, negative for a pin walked through every codec's links (``WALK``)."""
    return -time.time() if pin.walk else time.time()


def cid_text(raw: bytes) -> str:
    """A binary CID as text: base58 for v0, base32 for v1 (as everywhere else here).

    Rows hold CIDs checked when stored, so the fast printer serves: str(CID.decode(raw)) cost
    ~1.7 ms a row under load (multiformats validates every argument), the gateway's main
    cost per block read."""
    return _cid_text(bytes(raw))


def _meta(row: tuple[Any, ...]) -> BlockMeta:
    _, cid, size, remote, pins, heat, epoch, first, last, count, pack, off = row
    return BlockMeta(cid=cid_text(cid), size=size, first_access=first,
                     last_access=last, heat=heat, heat_epoch=epoch, access_count=count,
                     pins=pins, remote=bool(remote), pack=pack, off=off)


def _connect(path: Path, *, sync: bool, readonly: bool = False) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                           timeout=30.0)
    try:
        conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        if not readonly:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {'FULL' if sync else 'NORMAL'}")
            conn.execute("PRAGMA wal_autocheckpoint = 4000")
            check_synchronous(conn, sync)
        else:
            conn.execute("PRAGMA query_only = 1")
    except sqlite3.Error:
        conn.close()
        raise
    try:
        conn.execute("SELECT log2(2)")
    except sqlite3.OperationalError:  # SQLite built without its math functions
        conn.create_function("log2", 1, lambda x: math.log2(x) if x and x > 0 else None,
                             deterministic=True)
    return conn


SYNC_FULL, SYNC_NORMAL = 2, 1  # PRAGMA synchronous values


def check_synchronous(conn: sqlite3.Connection, sync: bool) -> None:
    """``[storage] sync`` promises a commit is on disk when it returns: in WAL mode only
    ``synchronous=FULL`` fsyncs the WAL at each commit (NORMAL waits for a checkpoint)."""
    (got,), = conn.execute("PRAGMA synchronous")
    want = SYNC_FULL if sync else SYNC_NORMAL
    if got != want:
        raise StoreError(f"the block index runs with PRAGMA synchronous={got}, not {want}")


def storage_error(exc: sqlite3.Error, what: str, root: Path) -> StoreError:
    """A typed error for a failed database operation; a full disk says what to do."""
    if isinstance(exc, sqlite3.OperationalError) and "full" in str(exc):
        return StoreFullError(
            f"the disk under {root} is full: {what} ({exc}); free space on that disk, or "
            "lower storage.max_size so GC keeps the store smaller")
    return StoreError(f"{what}: {exc}")


class BlockDB:
    """Blocking calls; the store runs writes on a worker thread, one at a time."""

    def __init__(self, path: Path, *, sync: bool = True) -> None:
        self.path = path
        self._sync = sync
        self.degraded = False
        self.migrated = False
        try:
            self._wr = _connect(path, sync=sync)
            self._migrate()
            self._rd = _connect(path, sync=sync, readonly=True)
        except sqlite3.OperationalError as exc:
            if "I/O" not in str(exc) and "full" not in str(exc):
                raise
            # A full disk: WAL's shared-memory file cannot be made. One connection in
            # exclusive mode needs none; writes fail (StoreFullError) until space is back.
            with contextlib.suppress(AttributeError, sqlite3.Error):
                self._wr.close()
            self._wr = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._wr.execute("PRAGMA locking_mode = EXCLUSIVE")
            self._wr.execute("PRAGMA journal_mode = WAL")
            self._wr.execute(f"PRAGMA synchronous = {'FULL' if sync else 'NORMAL'}")
            check_synchronous(self._wr, sync)
            self._rd = self._wr
            self.degraded = True
            # An older index on a full disk: its new table and column may not fit. It opens
            # without them (reads as an older index reads) and gets them at the first write
            # that finds space (``_txn``).
            with contextlib.suppress(sqlite3.OperationalError):
                self._migrate()
        self.counters = self._read_counters()
        #: Whether ``lost`` may hold rows (set when one is written, read at open): while it
        #: cannot, lookups and unpins skip looking there. ``_dropped``: rows of blocks that
        #: were stored (not identity CIDs), the ones a put may bring back: while there are
        #: none, puts skip looking (a probe a row cost ~4 us, a quarter of a put's index work).
        self._lost = self._dropped = False
        if self.migrated:
            self._lost = self._wr.execute("SELECT 1 FROM lost LIMIT 1").fetchone() is not None
            self._dropped = self._wr.execute(
                "SELECT 1 FROM lost WHERE substr(key, 1, 1) != x'00' LIMIT 1"
            ).fetchone() is not None
        if self._dropped:
            with contextlib.suppress(sqlite3.OperationalError):  # a full disk: next open
                self._reclaim_lost()

    def _reclaim_lost(self) -> None:
        """Counts in ``lost`` of blocks that have a row again: stored by a version before
        ``lost`` (rolled back to), whose row then said no pin, and GC would take the block.
        Back to their rows (a count its pin's older unpin left there stays: kept, not lost)."""
        c = self.counters
        with self._txn() as db:
            back = db.execute("DELETE FROM lost WHERE key IN (SELECT key FROM blocks) "
                              "RETURNING key, pins").fetchall()
            for key, pins in back:
                row = db.execute("UPDATE blocks SET pins=pins+? WHERE key=? RETURNING pins",
                                 (pins, key)).fetchone()
                if row is not None and pins > 0 and row[0] == pins:
                    c.pinned_blocks += 1

    def _migrate(self) -> None:
        """The schema, and what an index made by an older version lacks (``migrated``)."""
        self._wr.executescript(SCHEMA)
        columns = {r[1] for r in self._wr.execute("PRAGMA table_info(blocks)")}
        if "pack" not in columns:  # an index made before packs: its rows are files
            self._wr.execute("ALTER TABLE blocks ADD COLUMN pack INTEGER")
            self._wr.execute("ALTER TABLE blocks ADD COLUMN off INTEGER NOT NULL DEFAULT 0")
        self._wr.execute(PACK_INDEX)
        if "walk" in {r[1] for r in self._wr.execute("PRAGMA table_info(pins)")}:
            # A walk column (this version's first form): into the time's sign, and gone, so an
            # older daemon's five-value pin rows fit again. Each step may be repeated.
            self._wr.execute("UPDATE pins SET created=-max(abs(created), 1.0) WHERE walk != 0")
            self._wr.execute("ALTER TABLE pins DROP COLUMN walk")
        self.migrated = True

    def close(self) -> None:
        for conn in {self._rd, self._wr}:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def checkpoint(self) -> None:
        """Fold the WAL into the main file (a clean stop; it keeps the next open quick)."""
        self._wr.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _read_counters(self) -> Counters:
        row = self._wr.execute("SELECT blocks, bytes, remote_blocks, remote_bytes, "
                               "pinned_blocks, pins FROM counters").fetchone()
        return Counters(*row)

    @contextlib.contextmanager
    def _txn(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; counters committed with it, restored if it fails."""
        before = Counters(**vars(self.counters))
        if not self.migrated:  # opened on a full disk (see __init__): a full disk says so
            self._migrate()
        self._wr.execute("BEGIN IMMEDIATE")
        try:
            yield self._wr
            c = self.counters
            self._wr.execute(
                "UPDATE counters SET blocks=?, bytes=?, remote_blocks=?, remote_bytes=?, "
                "pinned_blocks=?, pins=? WHERE id=0",
                (c.blocks, c.bytes, c.remote_blocks, c.remote_bytes, c.pinned_blocks, c.pins))
            # commit(), not "COMMIT": one call that returns once SQLite made it durable
            # (synchronous=FULL in WAL: the WAL is fsynced before it returns), the point the
            # power-loss simulation (tests/hostile/powerloss_shim.py) records.
            self._wr.commit()
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self._wr.execute("ROLLBACK")
            self.counters = before
            raise

    # -- reads (event loop) ------------------------------------------------------------------

    def get(self, key: bytes) -> BlockMeta | None:
        row = self._rd.execute(f"SELECT {COLUMNS} FROM blocks WHERE key=?", (key,)).fetchone()
        return None if row is None else _meta(row)

    def local_size(self, key: bytes) -> int | None:
        row = self._rd.execute("SELECT size, remote FROM blocks WHERE key=?", (key,)).fetchone()
        return None if row is None or row[1] else int(row[0])

    def is_remote(self, key: bytes) -> bool:
        row = self._rd.execute("SELECT remote FROM blocks WHERE key=?", (key,)).fetchone()
        return bool(row and row[0])

    def exists(self, key: bytes) -> bool:
        return self._rd.execute("SELECT 1 FROM blocks WHERE key=?", (key,)).fetchone() is not None

    def pins_of(self, key: bytes) -> int:
        """How many pins cover the block, held here or lost (see ``lost``)."""
        row = self._rd.execute("SELECT pins FROM blocks WHERE key=?", (key,)).fetchone()
        if row is None and self._lost:
            row = self._rd.execute("SELECT pins FROM lost WHERE key=?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def lost_page(self, after: bytes, limit: int = PAGE_ROWS) -> list[tuple[bytes, str]]:
        """Pinned blocks whose bytes were lost: (key, CID text) with key > ``after``."""
        if not self._lost:
            return []
        rows = self._rd.execute("SELECT key, cid FROM lost WHERE key > ? ORDER BY key LIMIT ?",
                                (after, limit)).fetchall()
        return [(bytes(k), cid_text(c)) for k, c in rows]

    def page(self, after: bytes, *, local: bool | None = None, pinned: bool | None = None,
             limit: int = PAGE_ROWS) -> list[tuple[bytes, BlockMeta]]:
        """Up to ``limit`` rows with key > ``after``, in key order (a cursor for long walks)."""
        where = ["key > ?"]
        if local is not None:
            where.append("remote = 0" if local else "remote = 1")
        if pinned is not None:
            where.append("pins > 0" if pinned else "pins = 0")
        rows = self._rd.execute(f"SELECT {COLUMNS} FROM blocks WHERE {' AND '.join(where)} "
                                "ORDER BY key LIMIT ?", (after, limit)).fetchall()
        return [(bytes(r[0]), _meta(r)) for r in rows]

    def pin(self, cid: str) -> Pin | None:
        row = self._rd.execute(f"SELECT {PIN_COLUMNS} FROM pins WHERE cid=?",
                               (cid,)).fetchone()
        return None if row is None else Pin(*row)

    def is_root(self, key: bytes) -> bool:
        return self._rd.execute("SELECT 1 FROM pins WHERE key=?", (key,)).fetchone() is not None

    def pins_on(self, key: bytes) -> int:
        """How many pins have this block as their root (each counts once in its ``pins``)."""
        (n,), = self._rd.execute("SELECT count(*) FROM pins WHERE key=?", (key,)).fetchall()
        return int(n)

    def pin_page(self, after: str, limit: int = PAGE_ROWS) -> list[Pin]:
        rows = self._rd.execute(f"SELECT {PIN_COLUMNS} FROM pins WHERE cid > ? ORDER "
                                "BY cid LIMIT ?", (after, limit)).fetchall()
        return [Pin(*r) for r in rows]

    def collect_candidates(self, *, coldest_first: bool, before: float) -> Generator[
            list[tuple[bytes, int]], None, None]:
        """Unpinned local blocks stored before ``before``, in pages of (key, size): any order
        for a full GC, coldest first otherwise. Its own connection (a worker thread reads
        it while the loop uses the reader); a page's rows may be gone by the time it is used.
        """
        conn = self._rd if self.degraded else _connect(self.path, sync=self._sync,
                                                        readonly=True)
        try:
            if not coldest_first:
                # Key order, a short read transaction a page: a cursor held open for the
                # whole GC would pin its snapshot, so no checkpoint could reset the WAL and it
                # would grow by every page GC deletes.
                after = b""
                while rows := conn.execute(
                        "SELECT key, size FROM blocks WHERE key > ? AND pins = 0 AND remote = 0 "
                        "AND first < ? ORDER BY key LIMIT ?",
                        (after, before, PAGE_ROWS)).fetchall():
                    after = bytes(rows[-1][0])
                    yield [(bytes(k), int(s)) for k, s in rows]
                return
            cursor = conn.execute(
                "SELECT key, size FROM blocks WHERE pins = 0 AND remote = 0 AND first < ? "
                "ORDER BY CASE WHEN heat > 0 THEN epoch + log2(heat) ELSE -1e18 END, last",
                (before,))
            while rows := cursor.fetchmany(PAGE_ROWS):
                yield [(bytes(k), int(s)) for k, s in rows]
        finally:
            if conn is not self._rd:
                conn.close()

    def pinned_local_coldest(self) -> Generator[list[tuple[bytes, str, int]], None, None]:
        """Pinned raw blocks held locally, coldest first: candidates for the remote tier."""
        conn = self._rd if self.degraded else _connect(self.path, sync=self._sync,
                                                        readonly=True)
        try:
            cursor = conn.execute(
                "SELECT key, cid, size FROM blocks WHERE pins > 0 AND remote = 0 ORDER BY "
                "CASE WHEN heat > 0 THEN epoch + log2(heat) ELSE -1e18 END")
            while rows := cursor.fetchmany(PAGE_ROWS):
                yield [(bytes(k), cid_text(c), int(s)) for k, c, s in rows]
        finally:
            if conn is not self._rd:
                conn.close()

    # -- writes (worker thread, one at a time) -----------------------------------------------

    def put_many(self, rows: list[Row]) -> list[bytes]:
        """New local blocks (see ``Row``); a remote one comes back home. Returns the keys
        already held locally (their new copy in a pack is dead bytes, not counted live)."""
        c = self.counters
        skipped = []
        with self._txn() as db:
            for key, cid, size, t, pack, off in rows:
                old = db.execute("SELECT remote, size FROM blocks WHERE key=?",
                                 (key,)).fetchone()
                if old is None:
                    pins = self._found(db, key)
                    db.execute("INSERT INTO blocks (key, cid, size, first, last, count, pack, "
                               "off, pins) VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?)",
                               (key, cid, size, t, t, pack, off, pins))
                    if pins:
                        c.pinned_blocks += 1
                elif old[0]:
                    db.execute("UPDATE blocks SET remote=0, pack=?, off=? WHERE key=?",
                               (pack, off, key))
                    c.remote_blocks -= 1
                    c.remote_bytes -= old[1]
                else:
                    skipped.append(key)
                    if pack is not None:
                        self._pack_grew(db, pack, record_span(key, off, size)[1], 0)
                    continue
                c.blocks += 1
                c.bytes += size
                if pack is not None:
                    self._pack_grew(db, pack, record_span(key, off, size)[1],
                                    size + record_overhead(key))
        return skipped

    @staticmethod
    def _pack_grew(db: sqlite3.Connection, pack: int, end: int, live: int) -> None:
        """A record up to ``end`` committed in ``pack``; ``live`` bytes of it in use."""
        db.execute("INSERT INTO packs (id, end, live) VALUES (?, ?, ?) ON CONFLICT(id) DO "
                   "UPDATE SET end=max(end, excluded.end), live=live+excluded.live",
                   (pack, end, live))

    @staticmethod
    def _pack_lost(db: sqlite3.Connection, key: bytes, pack: int | None, size: int) -> None:
        """A packed block's row went: its record is dead bytes now."""
        if pack is not None:
            db.execute("UPDATE packs SET live=live-? WHERE id=?",
                       (size + record_overhead(key), pack))

    def touch_many(self, rows: Iterable[tuple[bytes, float, int, float, int]]) -> None:
        """Heat, epoch, last access and access count of blocks read (lost on a crash: only
        GC's order depends on it)."""
        with self._txn() as db:
            db.executemany("UPDATE blocks SET heat=?, epoch=?, last=?, count=count+? "
                           "WHERE key=?", ((h, e, t, n, k) for k, h, e, t, n in rows))

    def delete_many(self, keys: list[bytes], *, only_unpinned: bool
                    ) -> list[tuple[bytes, int, int | None, int]]:
        """Drop rows; returns (key, size, pack, offset) of the local ones dropped: a block
        file may then go (pack None); a packed one's record is dead bytes, to be punched."""
        c = self.counters
        gone: list[tuple[bytes, int, int | None, int]] = []
        where = "key=? AND pins=0" if only_unpinned else "key=?"
        with self._txn() as db:
            for key in keys:
                row = db.execute(f"DELETE FROM blocks WHERE {where} RETURNING size, remote, "
                                 "pins, pack, off, cid", (key,)).fetchone()
                if row is None:
                    continue
                size, remote, pins, pack, off, cid = row
                self._pack_lost(db, key, pack, size)
                if pins:  # its bytes are bad or gone (only_unpinned=False): its pins stay
                    c.pinned_blocks -= 1
                    db.execute("INSERT INTO lost VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE "
                               "SET pins=pins+excluded.pins", (key, cid, pins))
                    self._lost = self._dropped = True
                if remote:
                    c.remote_blocks -= 1
                    c.remote_bytes -= size
                else:
                    c.blocks -= 1
                    c.bytes -= size
                    gone.append((key, size, pack, off))
        return gone

    def set_remote(self, key: bytes) -> bool | tuple[int, int]:
        """Mark a pinned local block as held by the remote tier, durably (FULL sync for this
        one commit: its file is deleted next). False if it changed meanwhile, else True for
        a block file, or (pack, offset) of its record, dead bytes now."""
        c = self.counters
        self._wr.execute("PRAGMA synchronous = FULL")
        try:
            with self._txn() as db:
                row = db.execute("SELECT size, pack, off FROM blocks WHERE key=? AND remote=0 AND "
                                 "pins>0", (key,)).fetchone()
                if row is None:
                    return False
                db.execute("UPDATE blocks SET remote=1, pack=NULL, off=0 WHERE key=?", (key,))
                self._pack_lost(db, key, row[1], row[0])
                c.blocks -= 1
                c.bytes -= row[0]
                c.remote_blocks += 1
                c.remote_bytes += row[0]
            return True if row[1] is None else (int(row[1]), int(row[2]))
        finally:
            self._wr.execute(f"PRAGMA synchronous = {'FULL' if self._sync else 'NORMAL'}")

    def _count(self, db: sqlite3.Connection, keys: Iterable[bytes], delta: int,
               inline: Mapping[bytes, bytes] | None = None) -> list[bytes]:
        """Add ``delta`` to the pin count of each key; returns the keys not in the index.
        ``inline``: identity CIDs among the keys (key -> binary CID), never stored: counted
        in ``lost`` so that ``pin ls`` lists them as Kubo does."""
        c = self.counters
        missing = []
        for key in keys:
            if delta > 0:
                row = db.execute("UPDATE blocks SET pins=pins+1 WHERE key=? RETURNING pins",
                                 (key,)).fetchone()
                if row is None and inline and key in inline:
                    db.execute("INSERT INTO lost VALUES (?, ?, 1) ON CONFLICT(key) DO UPDATE "
                               "SET pins=pins+1", (key, inline[key]))
                    self._lost = True
                elif row is None:
                    missing.append(key)
                elif row[0] == 1:
                    c.pinned_blocks += 1
            else:
                row = db.execute("UPDATE blocks SET pins=pins-1 WHERE key=? AND pins>0 "
                                 "RETURNING pins", (key,)).fetchone()
                if row is not None and row[0] == 0:
                    c.pinned_blocks -= 1
                elif row is None and self._lost:
                    db.execute("UPDATE lost SET pins=pins-1 WHERE key=?", (key,))
                    db.execute("DELETE FROM lost WHERE key=? AND pins<=0", (key,))
        return missing

    def _found(self, db: sqlite3.Connection, key: bytes) -> int:
        """A block stored again: the pin count it had when its bytes were lost (0 if none)."""
        if not (self._dropped or (self._lost and key[:1] == b"\x00")):
            return 0
        row = db.execute("DELETE FROM lost WHERE key=? RETURNING pins", (key,)).fetchone()
        return int(row[0]) if row else 0

    def add_pin(self, pin: Pin, key: bytes, keys: list[bytes], old_keys: list[bytes],
                inline: Mapping[bytes, bytes] | None = None) -> list[bytes]:
        """Record a pin and count its blocks, in one transaction; ``old_keys`` (the blocks of
        the pin it replaces) are uncounted. Returns the keys no longer in the index (then
        nothing changed: GC took them meanwhile)."""
        c = self.counters
        with self._txn() as db:
            missing = self._count(db, keys, +1, inline)
            if missing:
                raise MissingBlocks(missing)
            self._count(db, old_keys, -1)
            existed = db.execute("SELECT 1 FROM pins WHERE cid=?", (pin.cid,)).fetchone()
            db.execute(INSERT_PIN, (pin.cid, key, pin.mode, pin.name, _created(pin)))
            if not existed:
                c.pins += 1
        return []

    def rename_pin(self, cid: str, name: str) -> None:
        """A pin made again under another name (Kubo replaces the pin; its counts stay)."""
        with self._txn() as db:
            db.execute("UPDATE pins SET name=? WHERE cid=?", (name, cid))

    def remove_pin(self, cid: str, keys: list[bytes]) -> bool:
        c = self.counters
        with self._txn() as db:
            if db.execute("DELETE FROM pins WHERE cid=? RETURNING 1", (cid,)).fetchone() is None:
                return False
            c.pins -= 1
            self._count(db, keys, -1)
        return True

    def update_pin(self, old: Pin, new: Pin, new_key: bytes, new_keys: list[bytes],
                   old_keys: list[bytes], unpin_old: bool,
                   replaced: Iterable[bytes] = (),
                   inline: Mapping[bytes, bytes] | None = None) -> None:
        """Pin NEW and (``unpin_old``) unpin OLD in one transaction: no moment without
        either, and no moment a crash could leave both half-counted. ``replaced``: the count
        of NEW's own direct pin, which the recursive one supersedes either way."""
        c = self.counters
        with self._txn() as db:
            missing = self._count(db, new_keys, +1, inline)
            if missing:
                raise MissingBlocks(missing)
            self._count(db, replaced, -1)
            existed = db.execute("SELECT 1 FROM pins WHERE cid=?", (new.cid,)).fetchone()
            db.execute(INSERT_PIN, (new.cid, new_key, new.mode, new.name, _created(new)))
            if not existed:
                c.pins += 1
            if unpin_old and db.execute("DELETE FROM pins WHERE cid=? RETURNING 1",
                                        (old.cid,)).fetchone() is not None:
                c.pins -= 1
                self._count(db, old_keys, -1)

    def reset_pin_counts(self, counted: Iterable[bytes]) -> None:
        """Set every count from scratch (after a rebuild): one per key in ``counted``."""
        c = self.counters
        with self._txn() as db:
            db.execute("UPDATE blocks SET pins=0 WHERE pins>0")
            c.pinned_blocks = 0
            self._count(db, counted, +1)

    def rebuild(self, on_disk: Iterable[tuple[bytes, bytes, int, int | None, int]],
                now: float, pack_ends: dict[int, int]) -> None:
        """Make the block rows agree with the files and pack records (key, binary CID, size,
        pack or None, offset); remote rows stay. ``pack_ends``: each pack's size."""
        c = self.counters
        with self._txn() as db:
            db.execute("CREATE TEMP TABLE IF NOT EXISTS seen (key BLOB PRIMARY KEY) "
                       "WITHOUT ROWID")
            db.execute("DELETE FROM temp.seen")
            for key, cid, size, pack, off in on_disk:
                db.execute("INSERT OR IGNORE INTO temp.seen VALUES (?)", (key,))
                row = db.execute("SELECT size FROM blocks WHERE key=?", (key,)).fetchone()
                if row is None:
                    db.execute("INSERT INTO blocks (key, cid, size, first, last, pack, off) "
                               "VALUES (?, ?, ?, ?, ?, ?, ?)", (key, cid, size, now, now, pack,
                                                                off))
                else:
                    db.execute("UPDATE blocks SET size=?, remote=0, pack=?, off=? WHERE key=?",
                               (size, pack, off, key))
            db.execute("DELETE FROM blocks WHERE remote=0 AND key NOT IN (SELECT key FROM "
                       "temp.seen)")
            db.execute("DELETE FROM temp.seen")
            db.execute("DELETE FROM packs")
            db.executemany("INSERT INTO packs (id, end) VALUES (?, ?)", pack_ends.items())
            db.execute("UPDATE packs SET live=(SELECT coalesce(sum(size + ? + length(key)), 0) "
                       "FROM blocks WHERE pack=packs.id AND remote=0)", (HEADER_SIZE,))
            (c.blocks, c.bytes), = db.execute(
                "SELECT count(*), coalesce(sum(size), 0) FROM blocks WHERE remote=0")
            (c.remote_blocks, c.remote_bytes), = db.execute(
                "SELECT count(*), coalesce(sum(size), 0) FROM blocks WHERE remote=1")
            (c.pinned_blocks,), = db.execute("SELECT count(*) FROM blocks WHERE pins>0")
            (c.pins,), = db.execute("SELECT count(*) FROM pins")

    def add_missing(self, rows: list[Row]) -> int:
        """Rows for block files the index lacks or counts as remote only (a crash between a
        file and its row, or before an unlink was durable)."""
        added = []
        for r in rows:
            row = self._wr.execute("SELECT remote FROM blocks WHERE key=?", (r[0],)).fetchone()
            if row is None or row[0]:
                added.append(r)
        if added:
            self.put_many(added)
        return len(added)

    # -- packs -------------------------------------------------------------------------------

    def packs(self) -> dict[int, tuple[int, int]]:
        """Every pack the index knows: id -> (committed end, live bytes); an end of -1
        marks a pack compaction emptied (its file goes; the row keeps its id known)."""
        return {r[0]: (r[1], r[2]) for r in
                self._rd.execute("SELECT id, end, live FROM packs").fetchall()}

    def pack_totals(self) -> tuple[int, int, int]:
        """(packs, bytes up to their committed ends, live bytes) for stats."""
        n, end, live = self._rd.execute(
            "SELECT count(*), coalesce(sum(end), 0), coalesce(sum(live), 0) FROM packs "
            "WHERE end >= 0").fetchone()
        return int(n), int(end), int(live)

    def set_pack_end(self, pack: int, end: int) -> None:
        """A pack's committed end after the start's recovery (its file's valid size)."""
        with self._txn() as db:
            db.execute("INSERT INTO packs (id, end) VALUES (?, ?) ON CONFLICT(id) DO UPDATE "
                       "SET end=excluded.end", (pack, end))

    def pack_end(self, pack: int) -> int | None:
        """A pack's committed end (-1: emptied by compaction), None if unknown."""
        row = self._rd.execute("SELECT end FROM packs WHERE id=?", (pack,)).fetchone()
        return None if row is None else int(row[0])

    def pack_keys_past(self, pack: int, end: int) -> list[bytes]:
        """Keys of the blocks whose record in ``pack`` does not end by ``end``."""
        rows = self._rd.execute("SELECT key FROM blocks WHERE pack=? AND off+size>?",
                                (pack, end)).fetchall()
        return [bytes(k) for (k,) in rows]

    def pack_rows(self, pack: int, after: int, limit: int = PAGE_ROWS
                  ) -> list[tuple[bytes, int, int]]:
        """(key, offset, size) of the local blocks in ``pack`` past ``after``, by offset."""
        rows = self._rd.execute("SELECT key, off, size FROM blocks WHERE pack=? AND off>? "
                                "ORDER BY off LIMIT ?", (pack, after, limit)).fetchall()
        return [(bytes(k), int(o), int(s)) for k, o, s in rows]

    def move(self, moves: list[tuple[bytes, int, int, int, int, int]]) -> int:
        """Compaction: (key, size, old pack, old offset, new pack, new offset) each, in one
        transaction; a row that changed meanwhile (deleted, moved) stays as it is and its
        copy is dead bytes. Returns how many moved. Durable (FULL sync for this commit) even
        with sync off: the old pack is unlinked next, and with it the only durable copy."""
        self._wr.execute("PRAGMA synchronous = FULL")
        try:
            return self._move(moves)
        finally:
            self._wr.execute(f"PRAGMA synchronous = {'FULL' if self._sync else 'NORMAL'}")

    def _move(self, moves: list[tuple[bytes, int, int, int, int, int]]) -> int:
        moved = 0
        with self._txn() as db:
            for key, size, old, old_off, new, new_off in moves:
                rec = size + record_overhead(key)
                hit = db.execute("UPDATE blocks SET pack=?, off=? WHERE key=? AND pack=? AND "
                                 "off=? RETURNING 1", (new, new_off, key, old, old_off)
                                 ).fetchone()
                self._pack_grew(db, new, record_span(key, new_off, size)[1],
                                rec if hit else 0)
                if hit:
                    db.execute("UPDATE packs SET live=live-? WHERE id=?", (rec, old))
                    moved += 1
        return moved

    def drop_pack(self, pack: int) -> bool:
        """Mark a pack no row names any more as emptied (end -1; then its file may go);
        False if a row still names it."""
        with self._txn() as db:
            if db.execute("SELECT 1 FROM blocks WHERE pack=? LIMIT 1", (pack,)).fetchone():
                return False
            db.execute("UPDATE packs SET end=-1, live=0 WHERE id=?", (pack,))
        return True

    def forget_packs(self, packs: list[int]) -> None:
        """Rows of emptied packs whose files are durably gone."""
        with self._txn() as db:
            db.executemany("DELETE FROM packs WHERE id=? AND end<0", ((p,) for p in packs))


class MissingBlocks(StoreError):
    """Blocks a pin needs were not in the index when it was recorded."""

    def __init__(self, keys: list[bytes]) -> None:
        super().__init__(f"{len(keys)} blocks went missing while pinning")
        self.keys = keys



__all__ = ["WALK", "BlockDB", "BlockMeta", "Counters", "MissingBlocks", "Pin", "PinMode", "Row",
           "storage_error"]
