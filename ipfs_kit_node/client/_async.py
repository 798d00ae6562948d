"""``AsyncClient``: the sync Client's API, awaited, for trio and asyncio programs alike (anyio
picks the running loop). The same namespaces (``c.pin``, ``c.block``, ``c.dag``, ``c.pubsub``,
``c.swarm``, ``c.task``), answers (``types``), errors and endpoints (``_wire``); the HTTP is
_ahttp.py (h11 on anyio streams), which sees Kubo's ``X-Stream-Error`` trailers.

Blocking work (building a DAG to add, unpacking a ``get`` tar) runs in worker threads; the
loop only moves bytes.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.from_thread
import anyio.to_thread

from ..errors import ApiError, TaskFailedError
from . import _wire
from ._ahttp import AsyncBody, AsyncConnection, AsyncPool, AsyncResponse
from ._http import ConnectionClosedError, NoContinueError
from ._sync import (
    PathLike,
    _cat_args,
    _frames,
    _import_items,
    _Multipart,
    _Uploaded,
    _waited,
    check_options,
    dag_put_args,
    dag_value,
    open_passed,
    passable,
    passed_line,
    passed_root,
    untar,
)
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

if TYPE_CHECKING:
    from ._sync import Source

    AsyncSource = Source | AsyncIterable[bytes]


class AsyncStreamed:
    """A streamed answer (``async with``): ``iter_bytes``, ``iter_lines``, ``iter_json``,
    ``read``."""

    def __init__(self, client: AsyncClient, method: str, target: str, body: AsyncBody,
                 timeout: float | None, fd: int | None = None) -> None:
        self._client = client
        self._request = (method, target, body, timeout, fd)
        self._conn: AsyncConnection | None = None
        self.response: AsyncResponse | None = None

    async def __aenter__(self) -> AsyncStreamed:
        self._conn, self.response = await self._client._open(*self._request)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            if self.response is not None and self.response.done:
                await self._client._pool.give(conn)
            else:
                await conn.aclose()  # unread body: the connection cannot be reused

    @property
    def status(self) -> int:
        assert self.response is not None
        return self.response.status

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        assert self.response is not None
        async for chunk in self.response.iter_raw():
            yield chunk

    async def read(self) -> bytes:
        assert self.response is not None
        return await self.response.read()

    async def iter_lines(self) -> AsyncIterator[str]:
        pending = b""
        async for chunk in self.iter_bytes():
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line.rstrip(b"\r").decode("utf-8", "surrogateescape")
        if pending:
            yield pending.decode("utf-8", "surrogateescape")

    async def iter_json(self) -> AsyncIterator[Any]:
        async for line in self.iter_lines():
            if line.strip():
                yield json.loads(line)


class AsyncClient:
    """``Client``'s arguments and methods, awaited (``async with AsyncClient() as c``).

    One client belongs to one event loop; its kept-alive connections are pooled.
    """

    def __init__(self, api: PathLike | None = None, *, repo: PathLike | None = None,
                 timeout: float = 60.0, auth: str | tuple[str, str] | None = None,
                 config_file: PathLike | None = None) -> None:
        self.endpoint = _wire.endpoint(api, repo=repo, auth=auth, config_file=config_file)
        self.timeout = timeout
        self._pool = AsyncPool(self.endpoint, timeout)
        self.pin = AsyncPinApi(self)
        self.block = AsyncBlockApi(self)
        self.dag = AsyncDagApi(self)
        self.pubsub = AsyncPubsubApi(self)
        self.swarm = AsyncSwarmApi(self)
        self.task = AsyncTaskApi(self)

    # -- plumbing --------------------------------------------------------------------------

    async def aclose(self) -> None:
        await self._pool.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _open(self, method: str, target: str, body: AsyncBody, timeout: float | None,
                    fd: int | None = None) -> tuple[AsyncConnection, AsyncResponse]:
        """A request on a pooled connection; with ``fd``, the body is that open file
        descriptor, passed over the unix socket (``AsyncConnection.request_fd``)."""
        replayable = body is None or isinstance(body, bytes)
        for attempt in range(2):
            conn = await self._pool.take(timeout)
            fresh = attempt == 1 or not conn.used
            conn.used = True
            try:
                response = await conn.request(method, target, body) if fd is None \
                    else await conn.request_fd(method, target, fd)
            except ConnectionClosedError:
                await conn.aclose()
                # A kept-alive connection the daemon closed meanwhile: once more, anew.
                if fresh or not replayable:
                    raise
                continue
            except BaseException:
                await conn.aclose()
                raise
            if response.status >= 400:
                try:
                    await response.raise_for_status()
                finally:
                    await self._pool.give(conn)
            return conn, response
        raise AssertionError("unreachable")

    async def call(self, command: str, args: _wire.Args | None = None, body: AsyncBody = None,
                   *, timeout: float | None = None) -> Any:
        """POST ``/api/v0/<command>`` and return its decoded JSON (None for an empty body)."""
        async with self.stream(command, args, body, timeout=timeout) as response:
            return _wire.decode_json(await response.read())

    def stream(self, command: str, args: _wire.Args | None = None, body: AsyncBody = None,
               *, timeout: float | None = None) -> AsyncStreamed:
        """POST ``/api/v0/<command>``; read the answer as it comes (``async with`` it)."""
        return AsyncStreamed(self, "POST", _wire.target(command, args), body, timeout)

    async def http_get(self, path: str) -> bytes:
        """GET a path on the API listener (``/metrics``)."""
        async with AsyncStreamed(self, "GET", path, None, None) as response:
            return await response.read()

    # -- node ------------------------------------------------------------------------------

    async def id(self) -> NodeId:
        return NodeId.from_json(await self.call("id"))

    async def status(self) -> Status:
        return Status.from_json(await self.call("status"))

    async def repo_stat(self) -> dict[str, Any]:
        return dict(await self.call("repo/stat"))

    # -- files -----------------------------------------------------------------------------

    async def add(self, source: AsyncSource, *, recursive: bool = False, pin: bool = True,
                  wrap: bool = False, hidden: bool = False, name: str = "", **options: Any
                  ) -> str:
        """As ``Client.add`` (a path, a folder with ``recursive=True``, bytes, a binary file,
        chunks sync or async): one local file is passed open to the daemon, else the DAG is
        built in a worker thread, a batch at a time, and uploaded."""
        if passable(self, source, options, wrap, name):
            check_options(hidden, options)
            lines = await self._add_passed(source, options, pin=pin, name=name)  # type: ignore[arg-type]
            if lines is not None:  # (None: the daemon cannot take it; uploaded below)
                return passed_root(lines)
        if isinstance(source, AsyncIterable):
            source = _from_async(source)
        items = _import_items(source, recursive, wrap, hidden, name, options)
        root = _Uploaded()
        frames = _frames(items, root)

        async def body() -> AsyncIterator[bytes]:
            while True:
                chunk = await anyio.to_thread.run_sync(next, frames, None)
                if chunk is None:
                    return
                yield chunk

        await self.call("block/put-many", {"pin-last": "true"} if pin else {}, body=body(),
                        timeout=max(self.timeout, 600.0))
        return root.cid()

    async def _add_passed(self, path: PathLike, options: Mapping[str, Any], *, pin: bool,
                          name: str) -> list[dict[str, Any]] | None:
        """As ``client._sync.add_passed``: the file passed open to the daemon, which reads,
        chunks, hashes and stores it (nothing uploaded, each byte hashed once)."""
        opened = open_passed(path, options, pin=pin, name=name)
        if opened is None:
            return None
        fd, target = opened
        try:
            lines: list[dict[str, Any]] = []
            try:
                async with AsyncStreamed(self, "POST", target, None,
                                         max(self.timeout, 120.0), fd=fd) as response:
                    async for text in response.iter_lines():
                        passed_line(text, lines, None)
            except NoContinueError:  # an older daemon, without the route
                return None
            except ApiError as exc:
                if exc.status == 404:
                    return None
                raise
            return lines
        finally:
            os.close(fd)

    async def add_bytes(self, data: bytes, *, pin: bool = True, **options: Any) -> str:
        return await self.add(data, pin=pin, **options)

    async def cat(self, path: str, offset: int = 0, length: int | None = None) -> bytes:
        """A file's bytes (a CID or ``CID/a/b``), or ``length`` of them from ``offset``."""
        async with self.stream("cat", _cat_args(path, offset, length)) as response:
            return await response.read()

    async def iter_cat(self, path: str, offset: int = 0, length: int | None = None
                       ) -> AsyncIterator[bytes]:
        """A file's bytes as they arrive, in flat memory (``async for``)."""
        async with self.stream("cat", _cat_args(path, offset, length)) as response:
            async for chunk in response.iter_bytes():
                yield chunk

    def open(self, path: str) -> AsyncRangeReader:
        """A read-only, seekable file (``async with c.open(cid) as f``): each read is a range."""
        return AsyncRangeReader(self, path)

    async def stat(self, path: str) -> Stat:
        """A CID's or a path's (``CID/a/b``) type and size."""
        path = path.strip("/").removeprefix("ipfs/")
        if "/" in path:  # unixfs/stat takes a CID: the entry's CID comes from its folder
            parent, name = path.rsplit("/", 1)
            found = [e for e in await self.ls(parent) if e.name == name]
            if not found:
                raise ApiError(f"no link named {name!r} under {parent}", 404)
            path = found[0].cid
        return Stat.from_json(await self.call("unixfs/stat", {"arg": path}))

    async def ls(self, path: str) -> list[Entry]:
        return [entry async for entry in self.iter_ls(path)]

    async def iter_ls(self, path: str) -> AsyncIterator[Entry]:
        """A folder's entries as the daemon resolves them (a huge folder in flat memory)."""
        async with self.stream("ls", {"arg": path, "stream": "true"}) as response:
            async for doc in response.iter_json():
                for link in doc["Objects"][0]["Links"]:
                    yield Entry.from_json(link)

    async def get(self, path: str, target: PathLike) -> Path:
        """Write a file or folder to ``target`` (unpacked in a worker thread as it arrives,
        tarfile's ``data`` filter: nothing lands outside ``target``)."""
        out = Path(target)
        async with self.stream("get", {"arg": path}) as response:
            chunks = _to_sync(response.iter_bytes())
            await anyio.to_thread.run_sync(untar, chunks, out)
        return out

    # -- tasks -----------------------------------------------------------------------------

    async def workers(self) -> list[Worker]:
        return [Worker.from_json(w) for w in (await self.call("workers"))["Workers"]]

    async def cluster_state(self) -> dict[str, Any]:
        return dict(await self.call("cluster/state"))


def _from_async(chunks: AsyncIterable[bytes]) -> Iterator[bytes]:
    """Async chunks as a sync iterator for the importer's worker thread (each pull runs on
    the event loop)."""
    return _to_sync(chunks.__aiter__())


def _to_sync(chunks: AsyncIterator[bytes]) -> Iterator[bytes]:
    async def pull() -> bytes | None:
        try:
            return await chunks.__anext__()
        except StopAsyncIteration:
            return None

    while (chunk := anyio.from_thread.run(pull)) is not None:
        yield chunk


class AsyncRangeReader:
    """A file on the node read by ranges (``cat`` offset/length): ``await f.read(n)``,
    ``f.seek(offset, whence)``; ``size`` is known once entered."""

    def __init__(self, client: AsyncClient, path: str) -> None:
        self.client = client
        self.path = path
        self.size = -1
        self.pos = 0
        self.fetched = 0  # bytes asked of the daemon so far

    async def __aenter__(self) -> AsyncRangeReader:
        self.size = (await self.client.stat(self.path)).size
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        if self.size < 0:
            raise ApiError("enter the reader first (async with c.open(path) as f)")
        base = {0: 0, 1: self.pos, 2: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    async def read(self, n: int = -1) -> bytes:
        if self.size < 0:
            raise ApiError("enter the reader first (async with c.open(path) as f)")
        want = self.size - self.pos if n < 0 else min(n, self.size - self.pos)
        if want <= 0:
            return b""
        data = await self.client.cat(self.path, self.pos, want)
        self.pos += len(data)
        self.fetched += len(data)
        return data


# -- namespaces --------------------------------------------------------------------------------


class AsyncPinApi:
    """Local pins, and pins on Kubo or IPFS Cluster (``remote="kubo"|"cluster"``, queued
    durably by the daemon)."""

    def __init__(self, client: AsyncClient) -> None:
        self._c = client

    async def add(self, cid: str | Sequence[str], *, recursive: bool = True,
                  remote: str | None = None, name: str = "", timeout: float = 60.0
                  ) -> list[str] | list[RemotePin]:
        cids = [cid] if isinstance(cid, str) else list(cid)
        if remote is not None:
            extra = {"name": name} if name else {}
            return [RemotePin.from_json(await self._c.call("pin/remote/add", {
                "arg": c, "remote": remote, **extra})) for c in cids]
        args: dict[str, Any] = {"arg": cids, "recursive": recursive,
                                "timeout": str(int(timeout))}
        if name:
            args["name"] = name
        pins: list[str] = []
        async with self._c.stream("pin/add", args, timeout=timeout + self._c.timeout
                                  ) as response:
            async for doc in response.iter_json():
                if doc.get("Type") == "error":
                    raise ApiError(doc.get("Message", "pin add failed"))
                pins = doc.get("Pins", pins)
        return pins

    async def rm(self, cid: str | Sequence[str], *, remote: str | None = None
                 ) -> list[str] | list[RemotePin]:
        cids = [cid] if isinstance(cid, str) else list(cid)
        if remote is not None:
            return [RemotePin.from_json(await self._c.call("pin/remote/rm", {
                "arg": c, "remote": remote})) for c in cids]
        return list((await self._c.call("pin/rm", {"arg": cids}))["Pins"])

    async def ls(self, cid: str | Sequence[str] | None = None, *, type: str = "all",
                 remote: str | None = None) -> list[Pin]:
        if remote is not None:
            async with self._c.stream("pin/remote/pins", {"remote": remote}) as response:
                return [Pin(d["Cid"], d.get("Type") or ",".join(d.get("Status", [])))
                        async for d in response.iter_json()]
        args: dict[str, Any] = {"type": type, "names": "true", "stream": "true"}
        if cid is not None:
            args["arg"] = [cid] if isinstance(cid, str) else list(cid)
            keys = (await self._c.call("pin/ls", args))["Keys"]
            return [Pin(c, i["Type"], i.get("Name", "")) for c, i in keys.items()]
        async with self._c.stream("pin/ls", args) as response:
            return [Pin(d["Cid"], d["Type"], d.get("Name", ""))
                    async for d in response.iter_json()]

    async def update(self, old: str, new: str, *, unpin: bool = True, timeout: float = 60.0
                     ) -> dict[str, Any]:
        return dict(await self._c.call("pin/update", {
            "arg": [old, new], "unpin": unpin, "timeout": str(int(timeout))},
            timeout=timeout + self._c.timeout))

    async def verify(self) -> list[dict[str, Any]]:
        async with self._c.stream("pin/verify", {"verbose": "true"}) as response:
            return [doc async for doc in response.iter_json()]

    async def queue(self, all: bool = False) -> list[RemotePin]:
        """The remote-pin queue (``all``: applied and failed intents too)."""
        return [RemotePin.from_json(i) for i in (await self._c.call(
            "pin/remote/ls", {"all": "true"} if all else {}))["Intents"]]


class AsyncBlockApi:
    def __init__(self, client: AsyncClient) -> None:
        self._c = client

    async def put(self, data: bytes, *, codec: str = "raw", mhtype: str = "sha2-256",
                  pin: bool = False) -> str:
        args = {"cid-codec": codec, "mhtype": mhtype, **({"pin": "true"} if pin else {})}
        return str((await self._c.call("block/put", args, body=data))["Key"])

    async def get(self, cid: str) -> bytes:
        async with self._c.stream("block/get", {"arg": cid}) as response:
            return await response.read()

    async def stat(self, cid: str) -> BlockStat:
        doc = await self._c.call("block/stat", {"arg": cid})
        return BlockStat(doc["Key"], int(doc["Size"]))

    async def rm(self, cid: str) -> str:
        return str((await self._c.call("block/rm", {"arg": cid}))["Hash"])


class AsyncDagApi:
    """IPLD nodes (dag-pb, raw, DAG-CBOR, DAG-JSON) and whole DAGs as CARs."""

    def __init__(self, client: AsyncClient) -> None:
        self._c = client

    async def put(self, value: Any, *, store_codec: str = "dag-cbor",
                  input_codec: str = "dag-json", hash: str = "sha2-256", pin: bool = False
                  ) -> str:
        """As ``Client.dag.put``: JSON-able data, or bytes already in ``input_codec``."""
        args, body = dag_put_args(value, store_codec, input_codec, hash, pin)
        return str((await self._c.call("dag/put", args, body=body))["Cid"]["/"])

    async def get(self, path: str, *, output_codec: str = "dag-json") -> Any:
        async with self._c.stream("dag/get", {"arg": path, "output-codec": output_codec}
                                  ) as response:
            return dag_value(await response.read(), output_codec)

    async def resolve(self, path: str) -> str:
        return str((await self._c.call("dag/resolve", {"arg": path}))["Cid"]["/"])

    async def stat(self, cid: str | Sequence[str]) -> dict[str, Any]:
        return dict(await self._c.call("dag/stat", {"arg": [cid] if isinstance(cid, str)
                                                    else list(cid)}))

    async def export(self, cid: str) -> AsyncIterator[bytes]:
        """The DAG as a CARv1, streamed."""
        async with self._c.stream("dag/export", {"arg": cid}) as response:
            async for chunk in response.iter_bytes():
                yield chunk

    async def import_(self, car: PathLike | bytes | AsyncIterable[bytes], *,
                      pin_roots: bool = True) -> list[str]:
        """Store a CAR's blocks (each verified); returns the roots it pinned (all, by default)."""
        body: AsyncBody
        if isinstance(car, bytes):
            body = car
        elif isinstance(car, str | os.PathLike):
            body = _afile_chunks(Path(car))
        else:
            body = car
        roots = []
        async with self._c.stream("dag/import", {"pin-roots": pin_roots}, body=body
                                  ) as response:
            async for doc in response.iter_json():
                root = doc.get("Root")
                if root is not None:
                    if root.get("PinErrorMsg"):
                        raise ApiError(root["PinErrorMsg"])
                    roots.append(root["Cid"]["/"])
        return roots


async def _afile_chunks(path: Path) -> AsyncIterator[bytes]:
    async with await anyio.open_file(path, "rb") as f:
        while chunk := await f.read(1 << 20):
            yield chunk


class AsyncPubsubApi:
    def __init__(self, client: AsyncClient) -> None:
        self._c = client

    async def publish(self, topic: str, data: bytes) -> None:
        if self._c.endpoint.kubo:  # Kubo's RPC takes the message as a multipart file
            boundary = "ikn-pubsub-boundary"
            body = _Multipart(
                (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                 f"filename=\"data\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                 ).encode() + data + f"\r\n--{boundary}--\r\n".encode(), boundary)
            await self._c.call("pubsub/pub", {"arg": _wire.topic_arg(topic, True)}, body=body)
            return
        await self._c.call("pubsub/pub", {"arg": topic}, body=data)

    async def subscribe(self, topic: str) -> AsyncIterator[Message]:
        """Messages as they arrive, until the iterator is closed (wrap it in
        ``contextlib.aclosing`` to unsubscribe as soon as you leave the ``async for``)."""
        async with self._c.stream("pubsub/sub", {"arg": _wire.topic_arg(
                topic, self._c.endpoint.kubo)}, timeout=24 * 3600.0) as response:
            async for doc in response.iter_json():
                yield Message(doc["from"], _wire.unb64(doc["data"]), _wire.unb64(doc["seqno"]),
                              tuple(_wire.unb64(t).decode("utf-8", "replace")
                                    for t in doc.get("topicIDs", [])))

    async def ls(self) -> list[str]:
        return [_wire.topic_of(t, self._c.endpoint.kubo)
                for t in (await self._c.call("pubsub/ls"))["Strings"]]

    async def peers(self, topic: str) -> list[str]:
        return list((await self._c.call("pubsub/peers", {
            "arg": _wire.topic_arg(topic, self._c.endpoint.kubo)}))["Strings"])


class AsyncSwarmApi:
    def __init__(self, client: AsyncClient) -> None:
        self._c = client

    async def peers(self) -> list[Peer]:
        return [Peer.from_json(p) for p in (await self._c.call("swarm/peers"))["Peers"]]

    async def connect(self, addr: str | Sequence[str]) -> list[str]:
        return list((await self._c.call("swarm/connect", {
            "arg": [addr] if isinstance(addr, str) else list(addr)}))["Strings"])


class AsyncTaskApi:
    """The task mesh: what this node's master (or the master it forwards to) runs."""

    def __init__(self, client: AsyncClient) -> None:
        self._c = client

    async def submit(self, handler: str, inputs: Sequence[str] = (),
                     params: Mapping[str, Any] | None = None, *, priority: int = 0,
                     timeout: float | None = None) -> str:
        done = await self.submit_many([_wire.task_doc(handler, inputs, params, priority, timeout)])
        if done.refused:
            raise ApiError(f"task refused: {done.refused[0][1]}", 400)
        return done.accepted[0]

    async def submit_many(self, tasks: Sequence[Mapping[str, Any]]) -> Submitted:
        """Several tasks in one round trip (documents as ``task_doc`` makes them)."""
        answer = await self._c.call("task/submit",
                                    body=json.dumps({"tasks": list(tasks)}).encode())
        return Submitted(tuple(answer["Accepted"]),
                         tuple((i, r) for i, r in answer["Refused"]))

    async def run(self, handler: str, inputs: Sequence[str] = (),
                  params: Mapping[str, Any] | None = None, *, priority: int = 0,
                  timeout: float | None = None, wait: float = 3600.0) -> TaskInfo:
        """Submit one task and wait for its outcome in one round trip (as ``Client``'s)."""
        answer = await self._c.call(
            "task/submit", {"wait": "true", "timeout": str(wait)},
            body=json.dumps({"tasks": [_wire.task_doc(handler, inputs, params, priority,
                                                timeout)]}).encode(),
            timeout=wait + self._c.timeout)
        return TaskInfo.from_json(_waited(answer))

    async def status(self, task_id: str) -> TaskInfo:
        return TaskInfo.from_json(await self._c.call("task/status", {"arg": task_id}))

    async def wait(self, task_id: str, timeout: float = 3600.0) -> TaskInfo:
        return TaskInfo.from_json(await self._c.call(
            "task/wait", {"arg": task_id, "timeout": str(timeout)},
            timeout=timeout + self._c.timeout))

    async def cancel(self, task_id: str) -> TaskInfo:
        return TaskInfo.from_json(await self._c.call("task/cancel", {"arg": task_id}))

    async def list(self, state: str | None = None) -> list[TaskInfo]:
        return [TaskInfo.from_json(t) for t in (await self._c.call(
            "task/list", {"state": state} if state else {}))["Tasks"]]

    async def stats(self) -> dict[str, int]:
        return dict((await self._c.call("task/stats"))["States"])

    async def result(self, task_id: str) -> bytes:
        """A finished task's output file; TaskFailedError if it failed."""
        info = await self.status(task_id)
        if info.state != "done":
            raise TaskFailedError(task_id, info.state, info.error)
        return await self._c.cat(info.output) if info.output else b""
