"""Pack files: small blocks appended to shared files, a log-structured store (bitcask-like).

Why: one file per block makes every small block cost a create, an fsync and a folder fsync to
write, an open to read, and an unlink to collect (0.2-2 ms each on ext4 with ``discard``; GC
of 1,000,000 blocks took 3-5 minutes, all of it unlinks). Blocks up to ``[storage]
pack_threshold`` bytes are instead appended to ``blocks/packs/NNNNNNNN.pack``; bigger ones
keep the one-file layout of disk.py, and a repo's existing block files keep being read.

Each record describes itself, so the index can be rebuilt from the packs and a torn tail
found after a crash: ``magic (4) | key length (u16) | data length (u32) | crc32 of the
preceding 10 bytes and the key (u32) | key (the multihash) | data``. The index row
(blockdb.py) holds the pack id and the data's offset; a read is one ``os.pread`` on a
descriptor kept open (at most ``FD_CACHE`` of them) and is re-hashed by the caller. Appends of
a batch are one write and one fsync; the caller commits the rows only after that fsync, so
everything past a pack's committed end (``packs.end`` in the index) was never acknowledged:
at start it is indexed if whole and valid, cut at the first record that is not.

One pack is active (appended to) at a time and rolled past ``pack_size``. A record is never
rewritten in place: deleting a block drops its row, then punches its record out of the pack
(``fallocate`` ``PUNCH_HOLE``: the disk space is freed at once, the range reads as zeros, and
an index rebuilt from the packs cannot bring the block back). Compaction (the store's GC)
copies the live records of a mostly dead pack to the active one, commits their new places,
punches out the records it moved, then unlinks the old pack. Pack ids only grow, so a stale
location can name a gone pack (a read then retries by key) but never a different record. On
a filesystem that cannot punch holes, dead records keep their space until compaction, as
they all did before.

Every method blocks; the store runs them on worker threads.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import struct
import threading
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import StoreFullError, is_disk_full
from ..journal import fsync_dir, mkdir_durably
from ..logs import get_logger
from .blocks import hash_matches

log = get_logger(__name__)

MAGIC = b"\x89IKP"
HEADER = struct.Struct(">4sHII")  # magic, key length, data length, crc32
SUFFIX = ".pack"
PACKS_DIR = "packs"
FD_CACHE = 64  # open pack descriptors kept (beyond those in use)


def record_overhead(key: bytes) -> int:
    """Bytes a record adds to its block's data."""
    return HEADER.size + len(key)


def record_span(key: bytes, off: int, size: int) -> tuple[int, int]:
    """(start, end) of the record whose data of ``size`` bytes starts at ``off``."""
    return off - HEADER.size - len(key), off + size


def _parse(buf: bytes, pos: int) -> tuple[bytes, int] | None:
    """(key, data length) of a valid record at ``pos`` of ``buf``, else None."""
    magic, klen, dlen, crc = HEADER.unpack_from(buf, pos)
    body = pos + HEADER.size
    if magic != MAGIC or body + klen + dlen > len(buf):
        return None
    key = buf[body:body + klen]
    if zlib.crc32(key, zlib.crc32(buf[pos:pos + 10])) != crc:
        return None
    if not hash_matches(key, memoryview(buf)[body + klen:body + klen + dlen]):
        return None
    return key, dlen


def record_head(key: bytes, size: int) -> bytes:
    """A record's bytes before its data of ``size`` bytes (header and key)."""
    head = struct.pack(">4sHI", MAGIC, len(key), size)
    return head + zlib.crc32(key, zlib.crc32(head)).to_bytes(4, "big") + key


def encode_record(key: bytes, data: bytes | memoryview) -> bytes:
    return record_head(key, len(data)) + bytes(data)


IOV_MAX = 1024  # buffers one pwritev takes (Linux)
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02


def _pwrite_all(fd: int, buffers: list[bytes | memoryview], pos: int) -> None:
    """Write ``buffers`` one after another from ``pos``, uncopied (pwritev, resumed after a
    short write): a 4 MiB batch was copied twice to be written in one piece."""
    views = [memoryview(b) for b in buffers if len(b)]
    while views:
        n = os.pwritev(fd, views[:IOV_MAX], pos)
        pos += n
        while views and n >= len(views[0]):
            n -= len(views.pop(0))
        if n:
            views[0] = views[0][n:]


def _fallocate() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    """libc's ``fallocate`` (Python's os has only posix_fallocate, which cannot punch)."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).fallocate
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    fn.restype = ctypes.c_int
    return fn


_FALLOCATE = _fallocate()


@dataclass(frozen=True, slots=True)
class Record:
    """A valid record found by ``scan``: its key, its data's offset and length."""

    key: bytes
    off: int
    size: int

    @property
    def end(self) -> int:
        return self.off + self.size


class _Fd:
    __slots__ = ("doomed", "fd", "users")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.users = 0
        self.doomed = False  # close once the last user is done


class PackFiles:
    """The pack folder: appends to the active pack, preads, scans, truncation, unlinks."""

    def __init__(self, root: Path, *, sync: bool = True, pack_size: int = 64 << 20) -> None:
        self.root = root
        self.sync = sync
        self.pack_size = pack_size
        mkdir_durably(root)
        self._lock = threading.Lock()
        self._fds: dict[int, _Fd] = {}  # insertion order = least recently opened first
        self.active = 0  # 0: none (the next append creates pack ``newest + 1``)
        self.newest = 0  # the highest pack id used
        self._end = 0  # where the next append to the active pack goes
        self._pending: dict[int, int] = {}  # appends not yet committed or abandoned, per pack
        self.punch_holes: bool | None = None  # False once the filesystem refused a hole
        # Disk space each pack takes (st_blocks), kept as appends and punches change it: the
        # store's stats and compaction's trigger weigh dead bytes against it on the event loop.
        self._allocated: dict[int, int] = {}

    def path(self, pack: int) -> Path:
        return self.root / f"{pack:08d}{SUFFIX}"

    def ids(self) -> list[int]:
        """The pack files present, by id."""
        out = []
        for entry in os.scandir(self.root):
            stem = entry.name[:-len(SUFFIX)]
            if entry.name.endswith(SUFFIX) and stem.isdigit():
                out.append(int(stem))
        return sorted(out)

    def size(self, pack: int) -> int | None:
        try:
            return os.stat(self.path(pack)).st_size
        except FileNotFoundError:
            return None

    def allocated(self, pack: int) -> int | None:
        """Disk space the pack takes (its punched holes take none); None if it is gone. Kept
        from the last append or punch (this process makes every change to it), else stat'ed
        (once a pack, or at ``measure``)."""
        with self._lock:
            known = self._allocated.get(pack)
        if known is not None:
            return known
        try:
            st = os.stat(self.path(pack))
        except FileNotFoundError:
            return None
        with self._lock:
            return self._allocated.setdefault(pack, st.st_blocks * 512)

    def measure(self) -> None:
        """Stat every pack present (at open, on a worker thread): the stats read on the event
        loop then never stat a pack."""
        for pack in self.ids():
            self.allocated(pack)

    def _measured(self, pack: int, fd: int) -> None:
        """Note ``pack``'s disk space after an append or a punch to it. The fstat is made
        under the lock, so of two appends the later note is never the older size."""
        with self._lock:
            self._allocated[pack] = os.fstat(fd).st_blocks * 512

    # -- descriptors -------------------------------------------------------------------------

    def _acquire(self, pack: int, *, create: bool = False) -> _Fd:
        with self._lock:
            entry = self._fds.pop(pack, None)
            if entry is None:
                flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
                entry = _Fd(os.open(self.path(pack), flags, 0o600))
            self._fds[pack] = entry  # most recently used last
            entry.users += 1
            self._trim()
            return entry

    def _release(self, entry: _Fd) -> None:
        with self._lock:
            entry.users -= 1
            if entry.doomed and entry.users == 0:
                os.close(entry.fd)

    def _trim(self) -> None:
        """Close the least recently used idle descriptors beyond ``FD_CACHE`` (lock held)."""
        excess = len(self._fds) - FD_CACHE
        for pack in list(self._fds):
            if excess <= 0:
                return
            entry = self._fds[pack]
            if pack != self.active and entry.users == 0:
                del self._fds[pack]
                os.close(entry.fd)
                excess -= 1

    def _forget_fd(self, pack: int) -> None:
        """Drop ``pack``'s cached descriptor (lock held)."""
        entry = self._fds.pop(pack, None)
        if entry is not None:
            if entry.users:
                entry.doomed = True  # a reader still uses it: its bytes stay readable
            else:
                os.close(entry.fd)

    def close(self) -> None:
        with self._lock:
            for entry in self._fds.values():
                if entry.users:
                    entry.doomed = True
                else:
                    os.close(entry.fd)
            self._fds.clear()

    # -- writes ------------------------------------------------------------------------------

    def set_active(self, pack: int, end: int | None) -> None:
        """Append to ``pack`` from ``end`` on (after the start's recovery); ``end`` None:
        ``pack`` is only the newest id used, the next append starts a new pack."""
        with self._lock:
            self.newest = max(self.newest, pack)
            self.active, self._end = (0, 0) if end is None else (pack, end)

    def _roll(self) -> None:
        """A new active pack (lock held): created and its name made durable before any
        record in it can be acknowledged. The folder is fsynced even with ``sync`` off:
        compaction fsyncs the records it moves (``durable``) and then unlinks their old
        pack, which is only safe if the new pack's name survives a power cut too."""
        new = self.newest + 1
        fd = os.open(self.path(new), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        fsync_dir(self.root)
        self._fds[new] = _Fd(fd)
        self._allocated[new] = 0
        self.active, self.newest, self._end = new, new, 0

    def roll(self) -> None:
        """The next append starts a new pack (compaction may then take the active one)."""
        with self._lock:
            self.active, self._end = 0, 0

    def append(self, items: Sequence[tuple[bytes, bytes | memoryview]], *,
               durable: bool = False) -> tuple[int, list[int]]:
        """Append records for ``items`` (key, data) in one vectored write, then fsync (with sync on,
        or ``durable``): (pack, data offsets). The caller must call ``settle(pack)`` once
        their rows are committed or abandoned: until then compaction leaves that pack alone."""
        buffers: list[bytes | memoryview] = []
        offs = []
        length = 0
        for key, data in items:
            head = record_head(key, len(data))
            offs.append(length + len(head))
            buffers += (head, data)
            length += len(head) + len(data)
        try:
            with self._lock:
                if not self.active or self._end >= self.pack_size:
                    self._roll()
                pack, start = self.active, self._end
                self._end += length  # reserved: another append goes after it
                self._pending[pack] = self._pending.get(pack, 0) + 1
            try:
                entry = self._acquire(pack)
            except BaseException:  # (out of descriptors): nothing written, nothing pending
                self.settle(pack)
                raise
            try:
                _pwrite_all(entry.fd, buffers, start)
                if self.sync or durable:
                    os.fsync(entry.fd)
                with contextlib.suppress(OSError):
                    self._measured(pack, entry.fd)
            except BaseException:
                # What was written is never acknowledged: its space is given back (on a full
                # disk, the index could not even record the deletes that would free some).
                self._punch_fd(entry.fd, pack, start, start + length)
                self.settle(pack)
                raise
            finally:
                self._release(entry)
        except OSError as exc:
            if is_disk_full(exc):
                raise StoreFullError(
                    f"the disk under {self.root} is full ({exc.strerror}); free space or lower "
                    "storage.max_size so GC keeps the store smaller") from exc
            raise
        return pack, [start + o for o in offs]

    def settle(self, pack: int) -> None:
        with self._lock:
            left = self._pending.get(pack, 0) - 1
            if left > 0:
                self._pending[pack] = left
            else:
                self._pending.pop(pack, None)

    def busy(self, pack: int) -> bool:
        """Appended to and not yet settled, or the active pack: not to be compacted."""
        with self._lock:
            return pack == self.active or pack in self._pending

    # -- reads -------------------------------------------------------------------------------

    def read(self, pack: int, off: int, size: int) -> bytes | None:
        """The ``size`` bytes at ``off`` of ``pack``; None if the pack is gone or too short
        (the caller re-reads the block's row: compaction may have moved it)."""
        try:
            entry = self._acquire(pack)
        except FileNotFoundError:
            return None
        try:
            data = os.pread(entry.fd, size, off)
        finally:
            self._release(entry)
        return data if len(data) == size else None

    def scan(self, pack: int, start: int = 0, *, resync: bool = False
             ) -> tuple[list[Record], int]:
        """Valid records from ``start`` on (header checksum and data hash both checked), and
        the end of the last one (the file's size if nothing invalid follows it).

        ``resync`` (rebuilding a lost index) skips over invalid bytes to the next valid
        record instead of stopping: an append that failed half-way leaves a hole that
        appends reserved after it do not share."""
        try:
            with open(self.path(pack), "rb") as f:
                f.seek(start)
                buf = f.read()
        except FileNotFoundError:
            return [], start
        records: list[Record] = []
        pos = last_end = 0
        while pos + HEADER.size <= len(buf):
            record = _parse(buf, pos)
            if record is not None:
                key, dlen = record
                off = pos + HEADER.size + len(key)
                records.append(Record(key, start + off, dlen))
                pos = last_end = off + dlen
                continue
            if not resync:
                break
            pos = buf.find(MAGIC, pos + 1)
            if pos < 0:
                break
        return records, start + last_end

    @staticmethod
    def punched(data: bytes) -> bool:
        """A read of a record that came back all zeros: punched out (its block deleted as it
        was read), not damaged."""
        return data.count(0) == len(data)

    # -- recovery and removal ----------------------------------------------------------------

    def punch(self, records: Iterable[tuple[int, bytes, int, int]]) -> int:
        """Free the disk space of dead records, each (pack, key, data offset, data size), as
        holes that read as zeros; returns the bytes punched. Called once their rows are
        dropped (durably, with sync on): a hole lost to a crash leaves only dead bytes. Not
        fsynced, for the same reason. A pack gone meanwhile (compacted) is skipped. Records
        side by side are punched as one range: a hole frees only the filesystem blocks
        wholly inside it (a record under 4 KiB punched alone frees nothing)."""
        return self.punch_spans((pack, *record_span(key, off, size))
                                for pack, key, off, size in records)

    def punch_spans(self, spans: Iterable[tuple[int, int, int]]) -> int:
        """``punch`` for byte ranges (pack, start, end) known to hold only dead records."""
        merged: list[list[int]] = []
        for pack, start, end in sorted(spans):
            if merged and merged[-1][0] == pack and start <= merged[-1][2]:
                merged[-1][2] = max(merged[-1][2], end)
            else:
                merged.append([pack, start, end])
        done = 0
        for pack, start, end in merged:
            if self.punch_holes is False:
                break
            try:
                entry = self._acquire(pack)
            except FileNotFoundError:
                continue
            except OSError as exc:  # (out of descriptors...): dead bytes, as a failed punch
                log.warning("cannot open a pack to punch its dead records; their space is "
                            "freed by compaction", pack=pack, error=str(exc))
                continue
            try:
                done += self._punch_fd(entry.fd, pack, start, end)
            finally:
                self._release(entry)
        return done

    def _punch_fd(self, fd: int, pack: int, start: int, end: int) -> int:
        """One hole (best effort: a failure leaves dead bytes for compaction); its size."""
        if self.punch_holes is False or _FALLOCATE is None or end <= start:
            return 0
        if _FALLOCATE(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, start, end - start) == 0:
            self.punch_holes = True
            with contextlib.suppress(OSError):
                self._measured(pack, fd)
            return end - start
        err = ctypes.get_errno()
        if err in (errno.EOPNOTSUPP, errno.ENOSYS) or (err == errno.EINVAL
                                                        and not self.punch_holes):
            self.punch_holes = False
            log.info("this filesystem cannot punch holes in pack files: a deleted block's "
                     "space is freed by compaction only", folder=str(self.root))
        else:
            log.warning("punching a dead record out of a pack failed; its space is freed by "
                        "compaction", pack=pack, error=os.strerror(err))
        return 0

    def truncate(self, pack: int, end: int) -> None:
        """Cut a torn tail (at start, before any append)."""
        fd = os.open(self.path(pack), os.O_RDWR)
        with self._lock:
            self._allocated.pop(pack, None)
        try:
            os.ftruncate(fd, end)
            if self.sync:
                os.fsync(fd)
        finally:
            os.close(fd)

    def unlink(self, pack: int) -> None:
        """Remove a pack whose records are all dead or moved (the moves committed first).

        Under the descriptor lock: a read opening the pack between forgetting its descriptor
        and the unlink would otherwise cache a descriptor of the deleted file for good."""
        with self._lock:
            self._forget_fd(pack)
            self._allocated.pop(pack, None)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path(pack))


__all__ = ["MAGIC", "PACKS_DIR", "PackFiles", "Record", "encode_record", "record_head",
           "record_overhead", "record_span"]
