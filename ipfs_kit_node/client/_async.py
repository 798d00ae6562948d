"""``AsyncClient``: the same API for trio and asyncio programs (httpx runs on both through
anyio). Answers, errors and endpoints are the sync Client's (``_wire``, ``types``)."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx

from ..errors import ApiError, ApiTimeoutError, DaemonNotRunningError
from . import _wire
from ._sync import PathLike, Source, _cat_args, _frames, _import_items, _Uploaded, task_doc
from .types import Entry, Message, NodeId, Pin, Stat, Status, Submitted, TaskInfo, Worker


class AsyncClient:
    """``Client``'s arguments and methods, awaited (``async with AsyncClient() as c``)."""

    def __init__(self, api: PathLike | None = None, *, repo: PathLike | None = None,
                 timeout: float = 60.0, auth: str | tuple[str, str] | None = None,
                 config_file: PathLike | None = None) -> None:
        self.endpoint = _wire.endpoint(api, repo=repo, auth=auth, config_file=config_file)
        self.timeout = timeout
        transport = httpx.AsyncHTTPTransport(uds=self.endpoint.unix) \
            if self.endpoint.unix else None
        headers = {"authorization": self.endpoint.authorization} \
            if self.endpoint.authorization else {}
        self._http = httpx.AsyncClient(transport=transport, base_url=self.endpoint.url,
                                       headers=headers,
                                       timeout=httpx.Timeout(timeout, connect=5.0))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @asynccontextmanager
    async def stream(self, command: str, args: _wire.Args | None = None, body: Any = None,
                     *, timeout: float | None = None) -> AsyncIterator[httpx.Response]:
        """POST ``/api/v0/<command>``; the response to read as it comes."""
        if self.endpoint.unix and not os.path.exists(self.endpoint.unix):
            raise DaemonNotRunningError(self.endpoint.repo, f"no API socket at "
                                        f"{self.endpoint.unix}")
        request = self._http.build_request(
            "POST", _wire.target(command, args), content=body,
            timeout=httpx.Timeout(timeout, connect=5.0) if timeout else httpx.USE_CLIENT_DEFAULT)
        try:
            response = await self._http.send(request, stream=True)
        except httpx.ConnectError as exc:
            raise DaemonNotRunningError(self.endpoint.repo, f"{self.endpoint.describe()}: "
                                        f"{exc}") from None
        except httpx.TimeoutException:
            raise ApiTimeoutError(f"the daemon did not answer in {self.timeout:g} s") from None
        try:
            if response.status_code >= 400:
                raise _wire.error_of(response.status_code, await response.aread())
            yield response
            trailer = response.headers.get("x-stream-error")
            if trailer:
                raise ApiError(trailer)
        except httpx.TimeoutException:
            raise ApiTimeoutError("the daemon stopped sending (timed out mid-stream)") from None
        except httpx.TransportError as exc:
            raise ApiError(f"the stream from the daemon broke: {exc}") from None
        finally:
            await response.aclose()

    async def call(self, command: str, args: _wire.Args | None = None, body: Any = None,
                   *, timeout: float | None = None) -> Any:
        async with self.stream(command, args, body, timeout=timeout) as response:
            return _wire.decode_json(await response.aread())

    async def _lines(self, command: str, args: _wire.Args, *, timeout: float | None = None
                     ) -> AsyncIterator[Any]:
        async with self.stream(command, args, timeout=timeout) as response:
            async for line in response.aiter_lines():
                if line.strip():
                    yield json.loads(line)

    # -- the API ---------------------------------------------------------------------------

    async def id(self) -> NodeId:
        return NodeId.from_json(await self.call("id"))

    async def status(self) -> Status:
        return Status.from_json(await self.call("status"))

    async def add(self, source: Source, *, recursive: bool = False, pin: bool = True,
                  wrap: bool = False, hidden: bool = False, name: str = "", **options: Any
                  ) -> str:
        """As ``Client.add``; the DAG is built in a worker thread, a batch at a time."""
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

    async def add_bytes(self, data: bytes, *, pin: bool = True, **options: Any) -> str:
        return await self.add(data, pin=pin, **options)

    async def cat(self, path: str, offset: int = 0, length: int | None = None) -> bytes:
        async with self.stream("cat", _cat_args(path, offset, length)) as response:
            return await response.aread()

    async def iter_cat(self, path: str, offset: int = 0, length: int | None = None
                       ) -> AsyncIterator[bytes]:
        async with self.stream("cat", _cat_args(path, offset, length)) as response:
            async for chunk in response.aiter_bytes():
                yield chunk

    async def stat(self, path: str) -> Stat:
        path = path.strip("/").removeprefix("ipfs/")
        if "/" in path:
            parent, name = path.rsplit("/", 1)
            found = [e for e in await self.ls(parent) if e.name == name]
            if not found:
                raise ApiError(f"no link named {name!r} under {parent}", 404)
            path = found[0].cid
        return Stat.from_json(await self.call("unixfs/stat", {"arg": path}))

    async def ls(self, path: str) -> list[Entry]:
        return [Entry.from_json(link)
                async for doc in self._lines("ls", {"arg": path, "stream": "true"})
                for link in doc["Objects"][0]["Links"]]

    async def pin_add(self, cid: str | Sequence[str], *, recursive: bool = True) -> list[str]:
        pins: list[str] = []
        async for doc in self._lines("pin/add", {"arg": [cid] if isinstance(cid, str)
                                                 else list(cid), "recursive": recursive}):
            if doc.get("Type") == "error":
                raise ApiError(doc.get("Message", "pin add failed"))
            pins = doc.get("Pins", pins)
        return pins

    async def pin_rm(self, cid: str | Sequence[str]) -> list[str]:
        return list((await self.call("pin/rm", {"arg": [cid] if isinstance(cid, str)
                                                else list(cid)}))["Pins"])

    async def pin_ls(self, *, type: str = "all") -> list[Pin]:
        return [Pin(d["Cid"], d["Type"], d.get("Name", "")) async for d in self._lines(
            "pin/ls", {"type": type, "names": "true", "stream": "true"})]

    async def block_put(self, data: bytes, *, codec: str = "raw") -> str:
        return str((await self.call("block/put", {"cid-codec": codec}, body=data))["Key"])

    async def block_get(self, cid: str) -> bytes:
        async with self.stream("block/get", {"arg": cid}) as response:
            return await response.aread()

    async def publish(self, topic: str, data: bytes) -> None:
        if self.endpoint.kubo:
            files = {"file": ("data", data, "application/octet-stream")}
            target = _wire.target("pubsub/pub", {"arg": _wire.topic_arg(topic, True)})
            response = await self._http.post(target, files=files)
            if response.status_code >= 400:
                raise _wire.error_of(response.status_code, response.content)
            return
        await self.call("pubsub/pub", {"arg": topic}, body=data)

    async def subscribe(self, topic: str) -> AsyncIterator[Message]:
        """Messages as they arrive (leave the ``async for`` to unsubscribe)."""
        async for doc in self._lines("pubsub/sub", {"arg": _wire.topic_arg(
                topic, self.endpoint.kubo)}, timeout=24 * 3600.0):
            yield Message(doc["from"], _wire.unb64(doc["data"]), _wire.unb64(doc["seqno"]),
                          tuple(_wire.unb64(t).decode("utf-8", "replace")
                                for t in doc.get("topicIDs", [])))

    async def task_submit(self, handler: str, inputs: Sequence[str] = (),
                          params: Mapping[str, Any] | None = None, **options: Any) -> str:
        done = await self.task_submit_many([task_doc(handler, inputs, params, **options)])
        if done.refused:
            raise ApiError(f"task refused: {done.refused[0][1]}", 400)
        return done.accepted[0]

    async def task_submit_many(self, tasks: Sequence[Mapping[str, Any]]) -> Submitted:
        answer = await self.call("task/submit", body=json.dumps({"tasks": list(tasks)}
                                                                ).encode())
        return Submitted(tuple(answer["Accepted"]), tuple((i, r) for i, r in answer["Refused"]))

    async def task_status(self, task_id: str) -> TaskInfo:
        return TaskInfo.from_json(await self.call("task/status", {"arg": task_id}))

    async def task_wait(self, task_id: str, timeout: float = 3600.0) -> TaskInfo:
        return TaskInfo.from_json(await self.call(
            "task/wait", {"arg": task_id, "timeout": str(timeout)},
            timeout=timeout + self.timeout))

    async def task_cancel(self, task_id: str) -> TaskInfo:
        return TaskInfo.from_json(await self.call("task/cancel", {"arg": task_id}))

    async def task_list(self, state: str | None = None) -> list[TaskInfo]:
        return [TaskInfo.from_json(t) for t in (await self.call(
            "task/list", {"state": state} if state else {}))["Tasks"]]

    async def workers(self) -> list[Worker]:
        return [Worker.from_json(w) for w in (await self.call("workers"))["Workers"]]

    async def cluster_state(self) -> dict[str, Any]:
        return dict(await self.call("cluster/state"))
