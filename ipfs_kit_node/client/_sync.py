"""``Client``: the daemon's RPC from plain Python (scripts, notebooks, the CLI itself).

Every method is one or a few HTTP calls over kept-alive connections, bounded by ``timeout``;
the daemon's errors come back as ApiError (its ``Message``, its status), an unreachable
daemon as DaemonNotRunningError. Thread-safe: each thread borrows its own connection.
"""

from __future__ import annotations

import io
import json
import os
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from ..errors import ApiError, IpfsKitError
from . import _wire
from ._http import Connection, ConnectionClosedError, NoContinueError, Pool, Response

TYPE_CHECKING = False  # importing typing costs a CLI command ~4 ms
if TYPE_CHECKING:
    from typing import Any, BinaryIO

    # Loaded where an answer is built: its 20 dataclasses cost ~5 ms at import, a twentieth
    # of what a CLI command may take, and the CLI prints the JSON as it comes.
    from .executor import TaskExecutor
    from .types import (
        BlockStat,
        Entry,
        Message,
        NodeId,
        Peer,
        Pin,
        RemotePin,
        Stat,
        Status,
        Submitted,
        TaskInfo,
        Worker,
    )

PathLike = str | os.PathLike[str]
if TYPE_CHECKING:
    Source = PathLike | bytes | BinaryIO | Iterable[bytes]


class Streamed:
    """A streamed answer as a context manager: ``iter_bytes``, ``iter_lines``, ``read``."""

    def __init__(self, client: Client, method: str, target: str, body: _wire.Body,
                 timeout: float | None, fd: int | None = None) -> None:
        self._client = client
        self._request = (method, target, body, timeout, fd)
        self._conn: Connection | None = None
        self.response: Response | None = None

    def __enter__(self) -> Streamed:
        self._conn, self.response = self._client._open(*self._request)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            if self.response is not None and self.response.done:
                self._client._pool.give(conn)
            else:
                conn.close()  # unread body: the connection cannot be reused

    @property
    def status(self) -> int:
        assert self.response is not None
        return self.response.status

    def iter_bytes(self) -> Iterator[bytes]:
        assert self.response is not None
        yield from self.response.iter_raw()

    def copy_to(self, fd: int) -> int:
        """Write the whole answer to a file descriptor (a file, stdout) as it arrives, with
        no copy of ours; returns how many bytes."""
        assert self.response is not None
        return self.response.copy_to(fd)

    def read(self) -> bytes:
        assert self.response is not None
        return self.response.read()

    def iter_lines(self) -> Iterator[str]:
        pending = b""
        for chunk in self.iter_bytes():
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line.rstrip(b"\r").decode("utf-8", "surrogateescape")
        if pending:
            yield pending.decode("utf-8", "surrogateescape")

    def iter_json(self) -> Iterator[Any]:
        for line in self.iter_lines():
            if line.strip():
                yield json.loads(line)


class Client:
    """The local daemon (repo from $IPFS_KIT_PATH) or one named by ``api``.

    Args:
        api: ``http://host:port`` (the TCP RPC), a ``/ip4/…/tcp/N`` multiaddr, or a unix socket
            path; by default the repo's socket, else the address in ``REPO/api``.
        repo: the daemon's repo folder (default $IPFS_KIT_PATH or ~/.ipfs-kit-node).
        timeout: seconds any one network operation may take (connect, send, each read).
        auth: ``"bearer:TOKEN"``, ``"basic:USER:PASS"`` or ``(user, password)`` for an RPC
            with ``[api] authorizations``.
    """

    def __init__(self, api: PathLike | None = None, *, repo: PathLike | None = None,
                 timeout: float = 60.0, auth: str | tuple[str, str] | None = None,
                 config_file: PathLike | None = None) -> None:
        self.endpoint = _wire.endpoint(api, repo=repo, auth=auth, config_file=config_file)
        self.timeout = timeout
        self._pool = Pool(self.endpoint, timeout)
        self.pin = PinApi(self)
        self.block = BlockApi(self)
        self.dag = DagApi(self)
        self.pubsub = PubsubApi(self)
        self.swarm = SwarmApi(self)
        self.task = TaskApi(self)

    # -- plumbing --------------------------------------------------------------------------

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self, method: str, target: str, body: _wire.Body, timeout: float | None,
              fd: int | None = None) -> tuple[Connection, Response]:
        """A request on a pooled connection; with ``fd``, the body is that open file
        descriptor, passed over the unix socket (``Connection.request_fd``)."""
        replayable = body is None or isinstance(body, bytes)
        for attempt in range(2):
            conn = self._pool.take(timeout)
            fresh = attempt == 1 or not getattr(conn, "used", False)
            conn.used = True  # type: ignore[attr-defined]
            try:
                response = conn.request(method, target, body) if fd is None \
                    else conn.request_fd(method, target, fd)
            except ConnectionClosedError:
                conn.close()
                # A kept-alive connection the daemon closed meanwhile: once more, anew.
                if fresh or not replayable:
                    raise
                continue
            except BaseException:
                conn.close()
                raise
            if response.status >= 400:
                try:
                    response.raise_for_status()
                finally:
                    self._pool.give(conn)
            return conn, response
        raise AssertionError("unreachable")

    def call(self, command: str, args: _wire.Args | None = None, body: _wire.Body = None,
             *, timeout: float | None = None) -> Any:
        """POST ``/api/v0/<command>`` and return its decoded JSON (None for an empty body)."""
        conn, response = self._open("POST", _wire.target(command, args), body, timeout)
        try:
            data = response.read()
        except BaseException:
            conn.close()
            raise
        self._pool.give(conn)
        return _wire.decode_json(data)

    def stream(self, command: str, args: _wire.Args | None = None, body: _wire.Body = None,
               *, timeout: float | None = None) -> Streamed:
        """POST ``/api/v0/<command>``; read the answer as it comes (``with`` it)."""
        return Streamed(self, "POST", _wire.target(command, args), body, timeout)

    def http_get(self, path: str) -> bytes:
        """GET a path on the API listener (``/metrics``)."""
        with Streamed(self, "GET", path, None, None) as response:
            return response.read()

    # -- node ------------------------------------------------------------------------------

    def id(self) -> NodeId:
        from .types import NodeId

        return NodeId.from_json(self.call("id"))

    def status(self) -> Status:
        from .types import Status

        return Status.from_json(self.call("status"))

    def repo_stat(self) -> dict[str, Any]:
        return dict(self.call("repo/stat"))

    # -- files -----------------------------------------------------------------------------

    def add(self, source: Source, *, recursive: bool = False, pin: bool = True,
            wrap: bool = False, hidden: bool = False, name: str = "", **options: Any) -> str:
        """Import a file, a folder (``recursive=True``), bytes, a binary file object or an
        iterable of byte chunks; returns the root CID.

        One local file by path, on the daemon's unix socket, is passed open: the daemon
        reads, chunks, hashes and stores it itself (``add_passed``). Anything else: the
        client builds the DAG and streams the blocks up in one request; the daemon verifies
        each block and pins the root. Either way the importer is the one ``add -n`` uses, so
        CIDs match Kubo's for the same options (``cid_version``, ``raw_leaves``,
        ``chunker``, ``hash``, ``profile``, ``trickle``…).
        """
        if passable(self, source, options, wrap, name):
            check_options(hidden, options)
            lines = add_passed(self, source, options, pin=pin, name=name)  # type: ignore[arg-type]
            if lines is not None:  # (None: the daemon cannot take it; uploaded below)
                return passed_root(lines)
        items = _import_items(source, recursive, wrap, hidden, name, options)
        root = _Uploaded()
        self.call("block/put-many", {"pin-last": "true"} if pin else {},
                  body=_frames(items, root), timeout=max(self.timeout, 600.0))
        return root.cid()

    def add_bytes(self, data: bytes, *, pin: bool = True, **options: Any) -> str:
        return self.add(data, pin=pin, **options)

    def cat(self, path: str, offset: int = 0, length: int | None = None) -> bytes:
        """A file's bytes (a CID or ``CID/a/b``), or ``length`` of them from ``offset``."""
        with self.stream("cat", _cat_args(path, offset, length)) as response:
            return response.read()

    def iter_cat(self, path: str, offset: int = 0, length: int | None = None
                 ) -> Iterator[bytes]:
        """A file's bytes as they arrive, in flat memory."""
        with self.stream("cat", _cat_args(path, offset, length)) as response:
            yield from response.iter_bytes()

    def open(self, path: str, buffer_size: int = 1 << 20) -> io.BufferedReader:
        """A read-only, seekable binary file: each read fetches the range it needs."""
        return io.BufferedReader(RangeReader(self, path), buffer_size)

    def stat(self, path: str) -> Stat:
        """A CID's or a path's (``CID/a/b``) type and size."""
        path = path.strip("/").removeprefix("ipfs/")
        if "/" in path:  # unixfs/stat takes a CID: the entry's CID comes from its folder
            parent, name = path.rsplit("/", 1)
            found = next((e for e in self.iter_ls(parent) if e.name == name), None)
            if found is None:
                raise ApiError(f"no link named {name!r} under {parent}", 404)
            path = found.cid
        from .types import Stat

        return Stat.from_json(self.call("unixfs/stat", {"arg": path}))

    def ls(self, path: str) -> list[Entry]:
        return list(self.iter_ls(path))

    def iter_ls(self, path: str) -> Iterator[Entry]:
        """A folder's entries as the daemon resolves them (a huge folder in flat memory)."""
        from .types import Entry

        with self.stream("ls", {"arg": path, "stream": "true"}) as response:
            for doc in response.iter_json():
                for link in doc["Objects"][0]["Links"]:
                    yield Entry.from_json(link)

    def get(self, path: str, target: PathLike) -> Path:
        """Write a file or folder to ``target`` (the RPC's tar, unpacked with tarfile's
        ``data`` filter: nothing lands outside ``target``)."""
        out = Path(target)
        with self.stream("get", {"arg": path}) as response:
            untar(response.iter_bytes(), out)
        return out

    # -- tasks -----------------------------------------------------------------------------

    def workers(self) -> list[Worker]:
        from .types import Worker

        return [Worker.from_json(w) for w in self.call("workers")["Workers"]]

    def cluster_state(self) -> dict[str, Any]:
        return dict(self.call("cluster/state"))

    def executor(self, **options: Any) -> TaskExecutor:
        """A concurrent.futures.Executor whose work runs on the mesh (see TaskExecutor)."""
        from .executor import TaskExecutor

        return TaskExecutor(self, **options)


class RangeReader(io.RawIOBase):
    """A file on the node read by ranges (``cat`` with offset/length): seek anywhere."""

    def __init__(self, client: Client, path: str) -> None:
        self.client = client
        self.path = path
        self.size = client.stat(path).size
        self.pos = 0
        self.fetched = 0  # bytes asked of the daemon so far

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        want = min(len(view), self.size - self.pos)
        if want <= 0:
            return 0
        data = self.client.cat(self.path, self.pos, want)
        view[:len(data)] = data
        self.pos += len(data)
        self.fetched += len(data)
        return len(data)


def untar(chunks: Iterator[bytes], out: Path) -> None:
    """Unpack the RPC's ``get`` tar into ``out``; the tar's top entry is named by the CID and
    becomes ``out``. tarfile's ``data`` filter runs against ``out`` itself, and a member whose
    path or a parent on disk is already a symlink is refused (a folder listing one name twice,
    a symlink then a file, would otherwise write through the link, outside ``out``)."""
    import tarfile

    with tarfile.open(fileobj=_ChunkReader(chunks), mode="r|") as tar:
        top_is_dir = False
        for index, member in enumerate(tar):
            _, _, rest = member.name.partition("/")
            rest = rest.rstrip("/")
            if index == 0:
                top_is_dir = member.isdir()
                if not top_is_dir:  # a lone file or symlink named ``out``
                    if out.is_symlink():
                        raise IpfsKitError(f"{out} is a symlink: not written through")
                    member.name = out.name
                    tar.extract(member, out.parent, filter="data")
                    continue
                if out.is_symlink():
                    raise IpfsKitError(f"{out} is a symlink: not written through")
                out.mkdir(parents=True, exist_ok=True)
                member.name = "."
                tar.extract(member, out, filter="data")  # the top's mode/mtime only
                continue
            if not top_is_dir or not rest:
                raise IpfsKitError(f"the daemon's tar has an unexpected entry {member.name!r}")
            step = out
            for part in Path(rest).parts:
                step = step / part
                if step.is_symlink():
                    raise IpfsKitError(f"{member.name!r} goes through the symlink {step}: "
                                       "refused (a name listed twice in a folder?)")
            member.name = rest
            tar.extract(member, out, filter="data")


class _ChunkReader(io.RawIOBase):
    """An iterator of chunks as a readable stream (for tarfile)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._buf:
            try:
                self._buf = next(self._chunks)
            except StopIteration:
                return 0
        view = memoryview(buffer).cast("B")
        n = min(len(view), len(self._buf))
        view[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


class _IterReader(io.RawIOBase):
    """Chunks in (an iterable of bytes) as the binary stream the importer reads."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._reader = _ChunkReader(iter(chunks))

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self._reader.readinto(buffer)


def _cat_args(path: str, offset: int, length: int | None) -> dict[str, str]:
    args = {"arg": path}
    if offset:
        args["offset"] = str(offset)
    if length is not None:
        args["length"] = str(length)
    return args


def passable(client: Client | Any, source: object, options: Mapping[str, Any], wrap: bool,
             name: str = "") -> bool:
    """A source ``add_passed`` can take: one regular file by path (not a symlink, whose
    target it would read), a daemon on this host's socket, options the daemon's add takes.
    ``client``: a Client or an AsyncClient."""
    if not isinstance(source, str | os.PathLike) or client.endpoint.unix is None or wrap:
        return False
    if options.get("profile") is not None or options.get("max_links") is not None \
            or "/" in name:
        return False
    path = Path(source)
    return path.is_file() and not path.is_symlink()


def check_options(hidden: bool, options: Mapping[str, Any]) -> None:
    """``add``'s options checked in the client as an upload would check them (an unknown
    keyword is a TypeError), before a file is passed open."""
    from ..unixfs.params import ImportParams

    try:
        ImportParams.kubo(hidden=hidden, **options)
    except (TypeError, ValueError) as exc:
        raise IpfsKitError(f"add options: {exc}") from None


def passed_root(lines: list[dict[str, Any]]) -> str:
    """The CID of a passed file, from add/fd's lines."""
    if not lines:
        raise IpfsKitError("the daemon added the file but named no CID for it")
    return str(lines[-1]["Hash"])


def open_passed(path: PathLike, options: Mapping[str, Any], *, pin: bool, name: str
                ) -> tuple[int, str] | None:
    """The file opened for ``/api/v0/add/fd`` and the request's target (the caller closes
    the descriptor). ``options`` are ``ImportParams.kubo``'s, which the daemon applies and
    checks (a 400 says what is wrong); only the mode and mtime a ``preserve_*`` option
    stores are read here, from the file (as ``importer.meta_for``, whose module this light
    path does not import). None for a trickle layout or a rabin/buzhash chunker: the daemon
    spools such a file whole and imports it saying nothing meanwhile (buzhash runs at ~20
    MB/s here: 2.4 GB is the 120 s read timeout), where the upload streams its blocks as
    they are made."""
    chunker = options.get("chunker")
    if options.get("trickle") or (chunker and not str(chunker).startswith("size-")):
        return None
    path = Path(path)
    query: dict[str, Any] = {"progress": True, "pin": pin, "name": name or path.name,
                             "inline": bool(options.get("inline")),
                             "inline-limit": options.get("inline_limit", 32)}
    for key in ("cid_version", "raw_leaves", "hash", "chunker", "mtime_nsecs"):
        if options.get(key) is not None:
            query[key.replace("_", "-")] = options[key]
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise IpfsKitError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
    except BaseException:
        os.close(fd)
        raise
    mode, mtime = options.get("mode"), options.get("mtime")
    if mode is None and options.get("preserve_mode"):
        mode = stat.S_IMODE(st.st_mode) or None
    if mtime is None and options.get("preserve_mtime"):
        mtime, query["mtime-nsecs"] = divmod(st.st_mtime_ns, 10**9)
    if mode is not None:
        query["mode"] = f"{mode:o}"
    if mtime is not None:
        query["mtime"] = mtime
    if (options.get("preserve_mode") or options.get("preserve_mtime")) \
            and options.get("raw_leaves") is None:
        query["raw-leaves"] = False  # metadata asked for means no raw leaves (Kubo)
    return fd, _wire.target("add/fd", query)


def passed_line(text: str, lines: list[dict[str, Any]],
                progress: Callable[[int], object] | None) -> None:
    """One line of add/fd's answer: an added entry kept, a progress count told."""
    line = json.loads(text)
    if "Hash" in line:
        lines.append(line)
    elif "Bytes" in line and progress is not None:
        progress(int(line["Bytes"]))


def add_passed(client: Client, path: PathLike, options: Mapping[str, Any], *,
               pin: bool = True, name: str = "",
               progress: Callable[[int], object] | None = None
               ) -> list[dict[str, Any]] | None:
    """Add one regular file by passing it open to the daemon (its descriptor, over the unix
    socket: ``/api/v0/add/fd``), which reads, chunks, hashes and stores it: nothing is
    uploaded and each byte is hashed once (options: see ``open_passed``). The daemon's add
    lines (``Name``, ``Hash``, ``Size``); ``progress`` is told the bytes read so far. None
    when the file must be uploaded instead: the daemon does not know the route (an older
    one), or ``open_passed`` says so."""
    opened = open_passed(path, options, pin=pin, name=name)
    if opened is None:
        return None
    fd, target = opened
    try:
        lines: list[dict[str, Any]] = []
        try:
            with Streamed(client, "POST", target, None, max(client.timeout, 120.0),
                          fd=fd) as response:
                for text in response.iter_lines():
                    passed_line(text, lines, progress)
        except NoContinueError:  # a daemon that reads the body first: one without the route
            return None
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return lines
    finally:
        os.close(fd)


def _import_items(source: Source, recursive: bool, wrap: bool, hidden: bool, name: str,
                  options: Mapping[str, Any]) -> Iterator[Any]:
    """The importer's items for any source ``add`` takes (blocks, then Added entries)."""
    from ..unixfs.importer import import_named_stream, import_paths
    from ..unixfs.params import ImportParams

    try:
        params = ImportParams.kubo(wrap_with_directory=wrap, hidden=hidden, **options)
    except (TypeError, ValueError) as exc:
        raise IpfsKitError(f"add options: {exc}") from None
    if isinstance(source, bytes | bytearray | memoryview):
        return import_named_stream(io.BytesIO(bytes(source)), name, params)
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.exists() and not path.is_symlink():
            raise IpfsKitError(f"{path}: no such file or folder")
        if path.is_dir() and not path.is_symlink() and not recursive:
            raise IpfsKitError(f"{path} is a folder; add it with recursive=True")
        return import_paths([path], params, [name] if name else None)
    if hasattr(source, "read"):
        return import_named_stream(source, name, params)  # type: ignore[arg-type]
    return import_named_stream(io.BufferedReader(_IterReader(source)), name, params)


class _Uploaded:
    """The root CID the importer reported last (top level: no ``/`` in its name)."""

    def __init__(self) -> None:
        self.root: bytes | None = None

    def cid(self) -> str:
        from ..cid import cid_text

        if self.root is None:
            raise IpfsKitError("nothing was added (an empty folder with hidden=False?)")
        return cid_text(self.root)


def _frames(items: Iterator[Any], root: _Uploaded, batch_bytes: int = 1 << 20
            ) -> Iterator[bytes]:
    """The importer's blocks as block/put-many frames: small ones about a MiB per chunk, a
    big block's bytes as they are (not copied into a chunk)."""
    from ..codecs.putmany import encode_frame, encode_frame_head
    from ..unixfs.importer import Added
    from ..unixfs.params import Block

    batch = bytearray()
    for item in items:
        if isinstance(item, Block):
            if len(item.data) >= 1 << 16:
                batch += encode_frame_head(item.cid_bytes, len(item.data))
                yield bytes(batch)
                batch.clear()
                yield item.data
                continue
            batch += encode_frame(item.cid_bytes, item.data)
            if len(batch) >= batch_bytes:
                yield bytes(batch)
                batch.clear()
        elif isinstance(item, Added) and "/" not in item.name:
            root.root = item.entry.cid_bytes
    if batch:
        yield bytes(batch)


# -- namespaces --------------------------------------------------------------------------------


class PinApi:
    """Local pins, and pins on Kubo or IPFS Cluster (``remote="kubo"|"cluster"``, queued
    durably by the daemon)."""

    def __init__(self, client: Client) -> None:
        self._c = client

    def add(self, cid: str | Sequence[str], *, recursive: bool = True,
            remote: str | None = None, name: str = "", timeout: float = 60.0
            ) -> list[str] | list[RemotePin]:
        from .types import RemotePin

        cids = [cid] if isinstance(cid, str) else list(cid)
        if remote is not None:
            extra = {"name": name} if name else {}
            return [RemotePin.from_json(self._c.call("pin/remote/add", {
                "arg": c, "remote": remote, **extra})) for c in cids]
        args: dict[str, Any] = {"arg": cids, "recursive": recursive,
                                "timeout": str(int(timeout))}
        if name:
            args["name"] = name
        pins: list[str] = []
        with self._c.stream("pin/add", args, timeout=timeout + self._c.timeout) as response:
            for doc in response.iter_json():
                if doc.get("Type") == "error":
                    raise ApiError(doc.get("Message", "pin add failed"))
                pins = doc.get("Pins", pins)
        return pins

    def rm(self, cid: str | Sequence[str], *, remote: str | None = None
           ) -> list[str] | list[RemotePin]:
        from .types import RemotePin

        cids = [cid] if isinstance(cid, str) else list(cid)
        if remote is not None:
            return [RemotePin.from_json(self._c.call("pin/remote/rm", {
                "arg": c, "remote": remote})) for c in cids]
        return list(self._c.call("pin/rm", {"arg": cids})["Pins"])

    def ls(self, cid: str | Sequence[str] | None = None, *, type: str = "all",
           remote: str | None = None) -> list[Pin]:
        from .types import Pin

        if remote is not None:
            with self._c.stream("pin/remote/pins", {"remote": remote}) as response:
                return [Pin(d["Cid"], d.get("Type") or ",".join(d.get("Status", [])))
                        for d in response.iter_json()]
        args: dict[str, Any] = {"type": type, "names": "true", "stream": "true"}
        if cid is not None:
            args["arg"] = [cid] if isinstance(cid, str) else list(cid)
            keys = self._c.call("pin/ls", args)["Keys"]
            return [Pin(c, i["Type"], i.get("Name", "")) for c, i in keys.items()]
        with self._c.stream("pin/ls", args) as response:
            return [Pin(d["Cid"], d["Type"], d.get("Name", "")) for d in response.iter_json()]

    def update(self, old: str, new: str, *, unpin: bool = True, timeout: float = 60.0
               ) -> dict[str, Any]:
        return dict(self._c.call("pin/update", {"arg": [old, new], "unpin": unpin,
                                                "timeout": str(int(timeout))},
                                 timeout=timeout + self._c.timeout))

    def verify(self) -> list[dict[str, Any]]:
        with self._c.stream("pin/verify", {"verbose": "true"}) as response:
            return list(response.iter_json())

    def queue(self, all: bool = False) -> list[RemotePin]:
        """The remote-pin queue (``all``: applied and failed intents too)."""
        from .types import RemotePin

        return [RemotePin.from_json(i) for i in self._c.call(
            "pin/remote/ls", {"all": "true"} if all else {})["Intents"]]


class BlockApi:
    def __init__(self, client: Client) -> None:
        self._c = client

    def put(self, data: bytes, *, codec: str = "raw", mhtype: str = "sha2-256",
            pin: bool = False) -> str:
        args = {"cid-codec": codec, "mhtype": mhtype, **({"pin": "true"} if pin else {})}
        return str(self._c.call("block/put", args, body=data)["Key"])

    def get(self, cid: str) -> bytes:
        with self._c.stream("block/get", {"arg": cid}) as response:
            return response.read()

    def stat(self, cid: str) -> BlockStat:
        from .types import BlockStat

        doc = self._c.call("block/stat", {"arg": cid})
        return BlockStat(doc["Key"], int(doc["Size"]))

    def rm(self, cid: str) -> str:
        return str(self._c.call("block/rm", {"arg": cid})["Hash"])


class DagApi:
    """IPLD nodes (dag-pb, raw, DAG-CBOR, DAG-JSON) and whole DAGs as CARs."""

    def __init__(self, client: Client) -> None:
        self._c = client

    def put(self, value: Any, *, store_codec: str = "dag-cbor", input_codec: str = "dag-json",
            hash: str = "sha2-256", pin: bool = False) -> str:
        """Store a node: ``value`` is JSON-able (links as ``{"/": CID}``, bytes as
        ``{"/": {"bytes": b64}}``), or ``bytes`` already encoded in ``input_codec``."""
        args, body = dag_put_args(value, store_codec, input_codec, hash, pin)
        return str(self._c.call("dag/put", args, body=body)["Cid"]["/"])

    def get(self, path: str, *, output_codec: str = "dag-json") -> Any:
        """A node (``CID/path/in/it``) as JSON-able data (DAG-JSON), else its bytes."""
        with self._c.stream("dag/get", {"arg": path, "output-codec": output_codec}
                            ) as response:
            return dag_value(response.read(), output_codec)

    def resolve(self, path: str) -> str:
        """The CID a path through IPLD nodes ends at."""
        return str(self._c.call("dag/resolve", {"arg": path})["Cid"]["/"])

    def stat(self, cid: str | Sequence[str]) -> dict[str, Any]:
        """Blocks and bytes of whole DAGs (Kubo's ``dag stat``: UniqueBlocks, TotalSize…)."""
        return dict(self._c.call("dag/stat", {"arg": [cid] if isinstance(cid, str)
                                              else list(cid)}))

    def export(self, cid: str) -> Iterator[bytes]:
        """The DAG as a CARv1, streamed."""
        with self._c.stream("dag/export", {"arg": cid}) as response:
            yield from response.iter_bytes()

    def import_(self, car: PathLike | bytes | Iterable[bytes], *, pin_roots: bool = True
                ) -> list[str]:
        """Store a CAR's blocks (each verified); returns the roots it pinned (all, by default)."""
        body: _wire.Body
        if isinstance(car, bytes):
            body = car
        elif isinstance(car, str | os.PathLike):
            body = _file_chunks(Path(car))
        else:
            body = car
        roots = []
        with self._c.stream("dag/import", {"pin-roots": pin_roots}, body=body) as response:
            for doc in response.iter_json():
                root = doc.get("Root")
                if root is not None:
                    if root.get("PinErrorMsg"):
                        raise ApiError(root["PinErrorMsg"])
                    roots.append(root["Cid"]["/"])
        return roots


def dag_put_args(value: Any, store_codec: str, input_codec: str, hash: str, pin: bool
                 ) -> tuple[dict[str, Any], bytes]:
    body = bytes(value) if isinstance(value, bytes | bytearray | memoryview) \
        else json.dumps(value, separators=(",", ":")).encode()
    args = {"store-codec": store_codec, "input-codec": input_codec, "hash": hash}
    return ({**args, "pin": "true"} if pin else args), body


def dag_value(data: bytes, output_codec: str) -> Any:
    return json.loads(data) if output_codec in ("dag-json", "json") else data


def _file_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            yield chunk


class PubsubApi:
    def __init__(self, client: Client) -> None:
        self._c = client

    def publish(self, topic: str, data: bytes) -> None:
        if self._c.endpoint.kubo:  # Kubo's RPC takes the message as a multipart file
            boundary = "ikn-pubsub-boundary"
            data = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                    f"filename=\"data\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                    ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
            conn, response = self._c._open(
                "POST", _wire.target("pubsub/pub", {"arg": _wire.topic_arg(topic, True)}),
                _Multipart(data, boundary), None)
            response.read()
            self._c._pool.give(conn)
            return
        self._c.call("pubsub/pub", {"arg": topic}, body=data)

    def subscribe(self, topic: str) -> Iterator[Message]:
        """Messages as they arrive, until the iterator is closed (``break`` out of it)."""
        from .types import Message

        with self._c.stream("pubsub/sub", {"arg": _wire.topic_arg(topic, self._c.endpoint.kubo)},
                            timeout=24 * 3600.0) as response:
            for doc in response.iter_json():
                yield Message(doc["from"], _wire.unb64(doc["data"]), _wire.unb64(doc["seqno"]),
                              tuple(_wire.unb64(t).decode("utf-8", "replace")
                                    for t in doc.get("topicIDs", [])))

    def ls(self) -> list[str]:
        return [_wire.topic_of(t, self._c.endpoint.kubo)
                for t in self._c.call("pubsub/ls")["Strings"]]

    def peers(self, topic: str) -> list[str]:
        return list(self._c.call("pubsub/peers", {
            "arg": _wire.topic_arg(topic, self._c.endpoint.kubo)})["Strings"])


class _Multipart(bytes):
    """A multipart body; the connection adds its content type (see Connection.request)."""

    boundary: str

    def __new__(cls, data: bytes, boundary: str) -> _Multipart:
        made = super().__new__(cls, data)
        made.boundary = boundary
        return made


class SwarmApi:
    def __init__(self, client: Client) -> None:
        self._c = client

    def peers(self) -> list[Peer]:
        from .types import Peer

        return [Peer.from_json(p) for p in self._c.call("swarm/peers")["Peers"]]

    def connect(self, addr: str | Sequence[str]) -> list[str]:
        return list(self._c.call("swarm/connect", {"arg": [addr] if isinstance(addr, str)
                                                   else list(addr)})["Strings"])


class TaskApi:
    """The task mesh: what this node's master (or the master it forwards to) runs."""

    def __init__(self, client: Client) -> None:
        self._c = client

    def submit(self, handler: str, inputs: Sequence[str] = (), params: Mapping[str, Any]
               | None = None, *, priority: int = 0, timeout: float | None = None) -> str:
        done = self.submit_many([_wire.task_doc(handler, inputs, params, priority, timeout)])
        if done.refused:
            raise ApiError(f"task refused: {done.refused[0][1]}", 400)
        return done.accepted[0]

    def submit_many(self, tasks: Sequence[Mapping[str, Any]]) -> Submitted:
        """Several tasks in one round trip (documents as ``task_doc`` makes them)."""
        from .types import Submitted

        answer = self._c.call("task/submit", body=json.dumps({"tasks": list(tasks)}).encode())
        return Submitted(tuple(answer["Accepted"]),
                         tuple((i, r) for i, r in answer["Refused"]))

    def run(self, handler: str, inputs: Sequence[str] = (), params: Mapping[str, Any]
            | None = None, *, priority: int = 0, timeout: float | None = None,
            wait: float = 3600.0) -> TaskInfo:
        """Submit one task and wait for its outcome in one round trip
        (``task/submit?wait=true``). Still running after ``wait`` seconds: its ``final`` is
        false. Refused, or forgotten before its outcome could be read: ApiError."""
        from .types import TaskInfo

        answer = self._c.call(
            "task/submit", {"wait": "true", "timeout": str(wait)},
            body=json.dumps({"tasks": [_wire.task_doc(handler, inputs, params, priority,
                                                timeout)]}).encode(),
            timeout=wait + self._c.timeout)
        return TaskInfo.from_json(_waited(answer))

    def status(self, task_id: str) -> TaskInfo:
        from .types import TaskInfo

        return TaskInfo.from_json(self._c.call("task/status", {"arg": task_id}))

    def wait(self, task_id: str, timeout: float = 3600.0) -> TaskInfo:
        from .types import TaskInfo

        return TaskInfo.from_json(self._c.call("task/wait", {"arg": task_id,
                                                             "timeout": str(timeout)},
                                               timeout=timeout + self._c.timeout))

    def cancel(self, task_id: str) -> TaskInfo:
        from .types import TaskInfo

        return TaskInfo.from_json(self._c.call("task/cancel", {"arg": task_id}))

    def list(self, state: str | None = None) -> list[TaskInfo]:
        from .types import TaskInfo

        return [TaskInfo.from_json(t) for t in self._c.call(
            "task/list", {"state": state} if state else {})["Tasks"]]

    def stats(self) -> dict[str, int]:
        return dict(self._c.call("task/stats")["States"])

    def result(self, task_id: str) -> bytes:
        """A finished task's output file; TaskFailedError if it failed."""
        from ..errors import TaskFailedError

        info = self.status(task_id)
        if info.state != "done":
            raise TaskFailedError(task_id, info.state, info.error)
        return self._c.cat(info.output) if info.output else b""


def _waited(answer: dict[str, Any]) -> dict[str, Any]:
    """The one outcome in a ``task/submit?wait=true`` answer, or its reason as ApiError."""
    if answer["Refused"]:
        raise ApiError(f"task refused: {answer['Refused'][0][1]}", 400)
    (doc,) = answer["Tasks"]
    if doc.get("State") is None:
        raise ApiError(f"task {doc['ID']} accepted but not waited on: {doc.get('Error')}", 503)
    return dict(doc)
