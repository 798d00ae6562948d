"""Kubo's ``add``: a multipart body of files, folders and symlinks imported as it streams in,
one ``{"Name","Hash","Size"}`` line per entry (``{"Name","Bytes"}`` progress lines with
``progress``), CIDs identical to ``ipfs-kit-node add -n`` and Kubo (the importer is shared).

Hashing runs in a worker thread a chunk at a time (the loop stays free); each block is stored
as made, so memory holds one chunk and one link list per tree level whatever the size. The
trickle layout pulls its chunks, so a trickle file is spooled to a temporary file first.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import stat
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any
from urllib.parse import quote

import trio
from multiformats import CID

from ...cid import cid_from_bytes, to_cid
from ...errors import ApiError, StoreFullError
from ...logs import get_logger
from ...storage.blocks import key_of
from ...storage.service import StoreService
from ...storage.writer import LinkTable, children_of
from ...unixfs.importer import DirectoryBuilder, FileBuilder, import_stream, symlink_node
from ...unixfs.params import Block, Entry, ImportParams, meta_for
from ..router import Request, Response, Router
from .multipart import PartData, PartEnd, PartHeaders, boundary_of, events

log = get_logger(__name__)

#: Progress lines at most this often (bytes of one file between two lines).
PROGRESS_EVERY = 1024 * 1024
#: A trickle file kept in memory up to this size before it spills to disk.
SPOOL_BYTES = 8 * 1024 * 1024
# Blocks made are stored (fsynced, indexed) a batch at a time.
PUT_BATCH_BLOCKS = 512
PUT_BATCH_BYTES = 4 * 1024 * 1024
STORE_DEPTH = 2  # batches stored at once
# Chunks are hashed in a worker thread 4 MiB at a time (one read of a passed file): a thread
# hop a 256 KiB chunk cost more than hashing it when the machine was busy, and hops of 1 MiB
# left a 64 MiB add waiting ~0.5 ms between each.
HOP_BYTES = 4 * 1024 * 1024

_TRUE = ("1", "true", "yes", "")  # a bare ?flag counts as true, as go-ipfs-cmds reads it


def _bool(request: Request, *names: str) -> bool | None:
    for name in names:
        value = request.arg(name)
        if value is not None:
            if value.lower() in _TRUE:
                return True
            if value.lower() in ("0", "false", "no"):
                return False
            raise ApiError(f"argument {name!r} must be true or false, got {value[:40]!r}", 400)
    return None


def params_of(request: Request) -> ImportParams:
    """Kubo's ``add`` options as ImportParams (a 400 names what is wrong)."""
    version = request.arg("cid-version")
    inline_limit = request.int("inline-limit", 32, minimum=0, maximum=128)
    try:
        return ImportParams.kubo(
            cid_version=None if version in (None, "") else request.int("cid-version", 0,
                                                                       maximum=1),
            raw_leaves=_bool(request, "raw-leaves"),
            chunker=request.arg("chunker") or None,
            hash=request.arg("hash") or None,
            trickle=_bool(request, "trickle", "t"),
            inline=bool(_bool(request, "inline")),
            inline_limit=inline_limit,
            hidden=bool(_bool(request, "hidden", "H")),
            wrap_with_directory=bool(_bool(request, "wrap-with-directory", "w")),
            mode=_mode(request.arg("mode")),
            # int64 seconds, as Kubo (before 1970 too: the CLI passes a file's own mtime)
            mtime=request.int("mtime", 0, minimum=-2**62, maximum=2**62)
            if request.arg("mtime") else None,
            mtime_nsecs=request.int("mtime-nsecs", 0, maximum=10**9 - 1)
            if request.arg("mtime-nsecs") else None,
        )
    except ValueError as exc:
        raise ApiError(str(exc), 400) from None


def _mode(text: str | None) -> int | None:
    if not text:
        return None
    try:
        return int(text, 8)
    except ValueError:
        raise ApiError(f"argument 'mode' must be octal, got {text[:20]!r}", 400) from None


def _is_dag_pb(cid_bytes: bytes) -> bool:
    """A CIDv0, or a CIDv1 of codec dag-pb (0x70), from its first bytes."""
    return cid_bytes[:2] == b"\x12\x20" or cid_bytes[:2] == b"\x01\x70"


def _is_identity(cid_bytes: bytes) -> bool:
    return bool(to_cid(cid_bytes).hashfun.code == 0) if cid_bytes[:1] == b"\x01" else False


@dataclass
class _Folder:
    builder: DirectoryBuilder
    explicit: bool = False


@dataclass
class _Session:
    """One ``add`` request: where its entries go, what to print."""

    params: ImportParams
    store: StoreService
    only_hash: bool
    cid_base: str | None
    progress: bool
    folders: dict[str, _Folder] = field(default_factory=dict)
    top: list[tuple[str, Entry]] = field(default_factory=list)
    pending: list[tuple[bytes, bytes]] = field(default_factory=list)
    pending_bytes: int = 0
    storing: list[trio.Event] = field(default_factory=list)  # batches being stored (set: done)
    store_error: Exception | None = None
    #: children of the dag-pb blocks made here, by store key, noted when the add pins: the
    #: pin at the end walks the DAG with them instead of reading every block back (as the
    #: block/put-many writer)
    links: LinkTable = field(default_factory=LinkTable)
    note_links: bool = False

    async def put(self, blocks: list[Block]) -> None:
        """Blocks are stored a batch at a time (one group of fsyncs and one index commit),
        each batch in the background while the next is imported; ``flush`` before telling
        the client an entry is added."""
        if self.only_hash:
            return
        for block in blocks:
            if not (self.params.inline and _is_identity(block.cid_bytes)):
                self.pending.append((block.cid_bytes, block.data))
                self.pending_bytes += len(block.data)
                if self.note_links and _is_dag_pb(block.cid_bytes) and not self.links.full:
                    cid = cid_from_bytes(block.cid_bytes)
                    if (noted := children_of(cid, block.data)) is not None:
                        self.links.note(key_of(cid), noted)
        if len(self.pending) >= PUT_BATCH_BLOCKS or self.pending_bytes >= PUT_BATCH_BYTES:
            await self.flush(wait=False)

    async def flush(self, *, wait: bool = True) -> None:
        """Store what is pending; with ``wait`` return once every block so far is durable,
        else start it on the store's nursery and return, with at most ``STORE_DEPTH``
        batches being stored at once (one's files written while another's fsyncs are waited
        on, as ``storage.writer``; one at a time left a 64 MiB add waiting on 64 rounds of
        fsyncs). The request body is an async generator, which must not hold a nursery of
        its own."""
        batch, self.pending, self.pending_bytes = self.pending, [], 0
        nursery = self.store.store.background
        if wait or nursery is None:
            await self._stored(0)
            if batch:
                await self.store.store.put_many(batch, hashed=True)
            return
        if not batch:
            return
        await self._stored(STORE_DEPTH - 1)
        done = trio.Event()
        self.storing.append(done)
        nursery.start_soon(self._store_batch, batch, done)

    async def _store_batch(self, batch: list[tuple[bytes, bytes]], done: trio.Event) -> None:
        try:
            await self.store.store.put_many(batch, hashed=True)
        except Exception as exc:  # raised to the request by its next flush
            self.store_error = exc
            # logged here too: a client that left meanwhile makes no next flush
            log.warning("add: storing a batch failed", blocks=len(batch),
                        error=f"{type(exc).__name__}: {exc}")
        finally:
            done.set()

    async def _stored(self, at_most: int) -> None:
        """Wait until at most ``at_most`` batches are still being stored (oldest first);
        a batch's error is raised here."""
        while len(self.storing) > at_most:
            await self.storing[0].wait()
            self.storing.pop(0)
        if self.store_error is not None:
            error, self.store_error = self.store_error, None
            raise error

    def cid_text(self, cid_bytes: bytes) -> str:
        cid = to_cid(cid_bytes)
        if self.cid_base and cid.version == 1:
            return cid.encode(self.cid_base)
        return str(cid)

    def line(self, name: str, entry: Entry, wrapper: bool = False) -> bytes:
        """One output line; an unnamed file (bytes or stdin) is named by its CID, as Kubo."""
        cid = self.cid_text(entry.cid_bytes)
        return json.dumps({"Name": name if name or wrapper else cid, "Hash": cid,
                           "Size": str(entry.tsize)}).encode() + b"\n"

    def place(self, path: str, entry: Entry) -> None:
        """Record a finished entry in its folder (or at the top)."""
        parent, _, name = path.rpartition("/")
        if not parent:
            self.top.append((path, entry))
            return
        self.folder(parent).builder.add(name, entry)

    def folder(self, path: str) -> _Folder:
        found = self.folders.get(path)
        if found is None:
            found = self.folders[path] = _Folder(DirectoryBuilder(
                self.params, meta=meta_for(None, self.params)))
            parent = path.rpartition("/")[0]
            if parent:
                self.folder(parent)
        return found


def _clean_path(name: str) -> str:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ApiError(f"a path in the upload climbs out of it: {name[:200]!r}", 400)
    return "/".join(parts)


def _hidden(path: str) -> bool:
    return any(p.startswith(".") for p in path.split("/"))


class _Chunker:
    """Re-cuts arriving bytes into exact ``size`` chunks (the importer's chunking)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.buf = bytearray()

    def feed(self, data: bytes) -> Iterator[bytes]:
        if not self.buf and len(data) == self.size:  # a read of exactly a chunk: as it is
            yield data
            return
        self.buf += data
        while len(self.buf) >= self.size:
            chunk = bytes(self.buf[:self.size])
            del self.buf[:self.size]
            yield chunk

    def rest(self) -> bytes:
        out = bytes(self.buf)
        self.buf.clear()
        return out


def register_add_routes(router: Router, store: StoreService) -> None:
    async def add(request: Request) -> Response:
        params = params_of(request)
        boundary = boundary_of(request.header("content-type"))
        session = _Session(params, store, only_hash=bool(_bool(request, "only-hash", "n")),
                           cid_base=request.arg("cid-base") or None,
                           progress=bool(_bool(request, "progress", "p")))
        _check_cid_base(session)
        pin = _bool(request, "pin") is not False and not session.only_hash
        session.note_links = pin
        assert request.chunks is not None
        body = _add_lines(session, events(request.chunks, boundary), pin=pin)
        if not session.only_hash:
            body = _held(session, body)
        return Response(body=body, content_type="application/json",
                        headers=[("x-chunked-output", "1")])

    router.add("POST", "/api/v0/add", add, streaming=True)

    async def add_fd(request: Request) -> Response:
        """``add`` of one regular file the client has open and passes (its descriptor, over
        the unix socket): the daemon reads it itself, so its bytes are neither uploaded nor
        hashed twice (the CLI's add of a local file). Kubo's add options and answer lines;
        ``name`` is the name the line gives the file."""
        if request.receive_fds is None:
            raise ApiError("add/fd takes an open file over the daemon's unix socket; upload "
                           "the file with /api/v0/add instead", 400)
        # hidden: the one file is added by its name even if that starts with a dot (as
        # `ipfs add .env`); the option only filters a folder's entries
        params = replace(params_of(request), hidden=True)
        name = request.arg("name") or ""
        if "/" in name:  # one file: a slash would file it in a folder of that name
            raise ApiError(f"name {name[:100]!r}: one file's name, without '/'", 400)
        session = _Session(params, store, only_hash=False,
                           cid_base=request.arg("cid-base") or None,
                           progress=bool(_bool(request, "progress", "p")))
        _check_cid_base(session)
        pin = _bool(request, "pin") is not False
        session.note_links = pin
        fd, = await request.receive_fds(1)
        try:
            problem = _unreadable(fd)
            source = io.FileIO(fd, "rb", closefd=True) if problem is None else None
        except BaseException:
            os.close(fd)
            raise
        if source is None:
            os.close(fd)
            raise ApiError(f"the descriptor sent is {problem}: upload the file with "
                           "/api/v0/add", 400)
        parts = _file_parts(source, name, params.chunk_size)
        return Response(body=_Owning(_held(session, _add_lines(session, parts, pin=pin)),
                                     parts, source),
                        content_type="application/json", headers=[("x-chunked-output", "1")])

    router.add("POST", "/api/v0/add/fd", add_fd, streaming=True)


def _check_cid_base(session: _Session) -> None:
    if session.cid_base:
        try:
            CID.decode("bafkqaaa").encode(session.cid_base)
        except Exception:
            raise ApiError(f"unknown cid-base {session.cid_base[:40]!r}", 400) from None


#: A passed file is read this much per worker-thread hop, in pieces of the chunk size.
FILE_READ_BYTES = 4 * 1024 * 1024
#: Passed files read at once: a read that hangs (a dead NFS or FUSE mount) holds its thread
#: until it returns, and must not take the threads every other blocking call waits on.
_FILE_READERS = trio.CapacityLimiter(4)


def _unreadable(fd: int) -> str | None:
    """Why ``fd`` cannot be read as a file with pread (None: it can): its bytes would
    otherwise fail only after the 200 went out."""
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        return "not a regular file (a folder, pipe or socket)"
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    if flags & getattr(os, "O_PATH", 0):
        return "opened with O_PATH (not for reading)"
    if flags & os.O_ACCMODE == os.O_WRONLY:
        return "open for writing only"
    return None


class _Owning:
    """An answer's body that owns the passed file: closed when the body ends, fails or is
    closed, started or not (an unstarted generator's ``finally`` never runs, and the server
    closes an answer it could not start sending without reading it). The file's reader
    (``parts``) is closed first: it waits out a read under way before the file goes."""

    def __init__(self, body: AsyncGenerator[bytes, None],
                 parts: AsyncGenerator[Any, None], source: io.FileIO) -> None:
        self.body = body
        self.parts = parts
        self.source = source

    def __aiter__(self) -> _Owning:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await anext(self.body)
        except BaseException:  # ended or failed
            await self._close_file()
            raise

    async def aclose(self) -> None:
        try:
            await self.body.aclose()
        finally:
            await self._close_file()

    async def _close_file(self) -> None:
        try:
            await self.parts.aclose()
        finally:
            self.source.close()


class _Ahead:
    """A blocking call on a worker thread while the caller goes on: the next piece of a
    passed file is read while this one is hashed (an async generator may hold no nursery).
    Its thread counts against ``limiter`` until it returns."""

    def __init__(self, limiter: trio.CapacityLimiter) -> None:
        self._limiter = limiter
        self._done = trio.Event()
        self._outcome: Any = None

    @classmethod
    async def start(cls, fn: Callable[[], Any], limiter: trio.CapacityLimiter) -> _Ahead:
        self = cls(limiter)
        await limiter.acquire_on_behalf_of(self)
        token = trio.lowlevel.current_trio_token()

        def deliver(outcome: Any) -> None:  # on the worker thread
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(self._arrived, outcome)

        trio.lowlevel.start_thread_soon(fn, deliver)
        return self

    def _arrived(self, outcome: Any) -> None:
        self._limiter.release_on_behalf_of(self)
        self._outcome = outcome
        self._done.set()

    async def result(self) -> Any:
        await self._done.wait()
        return self._outcome.unwrap()

    async def settled(self) -> None:
        """Returned, whatever the caller's cancellation: the file it reads may then close."""
        with trio.CancelScope(shield=True):
            await self._done.wait()


async def _file_parts(source: io.FileIO, name: str, chunk_size: int
                      ) -> AsyncGenerator[PartHeaders | PartData | PartEnd, None]:
    """A passed file as the multipart events of one file part, read from its start (the
    client's offset neither used nor moved) in pieces of the chunk size: the chunker then
    takes each piece as it is, uncopied. The next ``FILE_READ_BYTES`` are read while the
    last are hashed: one after the other, the reads took a third of a 64 MiB add's time.
    The file is closed once no read of it is under way."""
    piece = chunk_size if chunk_size >= 64 * 1024 else 1024 * 1024
    count = max(1, FILE_READ_BYTES // piece)
    fd = source.fileno()

    def read(offset: int) -> list[bytes]:
        out = []
        for _ in range(count):
            data = os.pread(fd, piece, offset)
            if not data:
                break
            out.append(data)
            offset += len(data)
        return out

    ahead: _Ahead | None = None
    try:
        yield PartHeaders({"content-disposition":
                           f'form-data; name="file"; filename="{quote(name, safe="")}"',
                           "content-type": "application/octet-stream"})
        offset = 0
        ahead = await _Ahead.start(partial(read, 0), _FILE_READERS)
        while pieces := await ahead.result():
            offset += sum(map(len, pieces))
            ahead = await _Ahead.start(partial(read, offset), _FILE_READERS)
            for data in pieces:
                yield PartData(data)
        ahead = None
        yield PartEnd()
    finally:
        if ahead is not None:
            await ahead.settled()
        source.close()


async def _held(session: _Session, lines: AsyncGenerator[bytes, None]
                ) -> AsyncGenerator[bytes, None]:
    """A GC meanwhile spares every block this add stores (or finds stored) until the add has
    pinned them and ended; ``lines`` is closed with this (not left to the collector)."""
    with session.store.store.hold():
        async with contextlib.aclosing(lines):
            async for line in lines:
                yield line


async def _add_lines(session: _Session, parts: AsyncIterator[Any], *, pin: bool
                     ) -> AsyncGenerator[bytes, None]:
    params = session.params
    head: PartHeaders | None = None
    path = ""
    chunker: _Chunker | None = None
    builder: FileBuilder | None = None
    spool: Any = None
    spool_limit = 0
    symlink = bytearray()
    ready: list[bytes] = []  # chunks cut, not yet hashed
    seen = reported = 0
    async for event in parts:
        if isinstance(event, PartHeaders):
            head, path = event, _clean_path(event.filename)
            seen = reported = 0
            if path and _hidden(path) and not params.hidden:
                head = None  # dot-files only with ?hidden, as `ipfs add -r`
            elif head.kind == "directory":
                if path:
                    session.folder(path).explicit = True
            elif head.kind == "symlink":
                symlink.clear()
            elif params.trickle or params.chunker is not None:  # trickle, rabin, buzhash
                # closed by _import_spooled (or by the collector if the upload breaks off);
                # on the store's disk, not $TMPDIR (often RAM, and outside storage.max_size)
                store = session.store.store
                spool = tempfile.SpooledTemporaryFile(  # noqa: SIM115
                    SPOOL_BYTES, dir=str(store.scratch_dir))
                spool_limit = store.config.max_size
            else:
                chunker = _Chunker(params.chunk_size)
                builder = FileBuilder(params, meta_for(None, params))
        elif isinstance(event, PartData) and head is not None:
            seen += len(event.data)
            if head.kind == "symlink":
                symlink += event.data
                if len(symlink) > 4096:
                    raise ApiError(f"symlink {path!r}: target over 4096 bytes", 400)
            elif spool is not None:
                if seen > spool_limit:
                    raise StoreFullError(
                        f"{path or 'the file'}: over storage.max_size ({spool_limit} bytes) "
                        "before it could be chunked; add it with the default chunker, or "
                        "raise storage.max_size")
                await trio.to_thread.run_sync(spool.write, event.data)
            elif builder is not None and chunker is not None:
                ready += chunker.feed(event.data)
                if sum(map(len, ready)) >= HOP_BYTES:
                    made = await trio.to_thread.run_sync(_add_chunks, builder, ready)
                    ready = []
                    await session.put(made)
            if session.progress and head.kind == "file" and seen - reported >= PROGRESS_EVERY:
                reported = seen
                yield json.dumps({"Name": path, "Bytes": seen}).encode() + b"\n"
        elif isinstance(event, PartEnd) and head is not None:
            if head.kind == "directory":
                head = None
                continue
            if head.kind == "symlink":
                block, entry = symlink_node(bytes(symlink), params)
                await session.put([block])
            elif spool is not None:
                entry = await _import_spooled(session, spool)
                spool = None
            else:
                assert builder is not None and chunker is not None
                rest = chunker.rest()
                if rest:
                    ready.append(rest)
                if ready:
                    made = await trio.to_thread.run_sync(_add_chunks, builder, ready)
                    ready = []
                    await session.put(made)
                blocks, entry = await trio.to_thread.run_sync(builder.finish)
                await session.put(blocks)
                builder = chunker = None
            if session.progress and head.kind == "file" and (reported != seen or seen == 0):
                yield json.dumps({"Name": path, "Bytes": seen}).encode() + b"\n"
            await session.flush()
            yield session.line(path, entry)
            session.place(path, entry)
            head = None
    # Folders once all their entries are in: deepest first, so each finishes into its parent.
    for folder_path in sorted(session.folders, key=lambda p: (-p.count("/"), p)):
        blocks, entry = await trio.to_thread.run_sync(
            session.folders[folder_path].builder.finish_all)
        await session.put(blocks)
        await session.flush()
        yield session.line(folder_path, entry)
        session.place(folder_path, entry)
    roots = [entry for _, entry in session.top]
    if params.wrap_with_directory and session.top:
        wrapper = DirectoryBuilder(params)
        for name, entry in session.top:
            wrapper.add(name or session.cid_text(entry.cid_bytes), entry)
        blocks, wrapped = await trio.to_thread.run_sync(wrapper.finish_all)
        await session.put(blocks)
        await session.flush()
        yield session.line("", wrapped, wrapper=True)
        roots = [wrapped]
    await session.flush()
    if pin:
        for entry in roots:
            await session.store.store.pin(to_cid(entry.cid_bytes), recursive=True,
                                          links=session.links)


def _add_chunks(builder: FileBuilder, chunks: list[bytes]) -> list[Block]:
    return [block for chunk in chunks for block in builder.add_chunk(chunk)]


async def _import_spooled(session: _Session, spool: Any) -> Entry:
    """A spooled (trickle) file imported in a worker thread, each block stored as made."""
    spool.seek(0)
    found: list[Entry] = []

    def run() -> None:
        try:
            for made in import_stream(spool, session.params):
                if isinstance(made, Entry):
                    found.append(made)
                else:
                    trio.from_thread.run(session.put, [made])
        finally:
            spool.close()

    await trio.to_thread.run_sync(run)
    return found[0]
