"""AsyncClient against real daemons, every area under trio and under asyncio: the same
namespaces, answers and errors as the sync Client (tests/client/test_client.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import anyio
import pytest
import trio
from helpers import Daemon

from ipfs_kit_node import AsyncClient, Client
from ipfs_kit_node.client import Entry, Message, Pin, Stat, TaskInfo
from ipfs_kit_node.errors import ApiError, DaemonNotRunningError, IpfsKitError, TaskFailedError

MakeDaemon = Callable[..., Daemon]


async def files(c: AsyncClient, work: Path) -> None:
    data = os.urandom(600_000)
    cid = await c.add_bytes(data)
    assert cid == Client(c.endpoint.unix or c.endpoint.url, repo=c.endpoint.repo).add(
        data, pin=False)  # the same DAG as the sync client builds
    assert await c.cat(cid) == data
    assert await c.cat(cid, 10, 5) == data[10:15]
    assert b"".join([chunk async for chunk in c.iter_cat(cid)]) == data
    assert await c.stat(cid) == Stat(cid, "file", len(data))
    async with c.open(cid) as f:
        f.seek(-10, 2)
        assert await f.read() == data[-10:]
        f.seek(100)
        assert await f.read(3) == data[100:103] and f.tell() == 103

    async def chunks() -> AsyncIterator[bytes]:
        yield data[:7]
        await anyio.sleep(0)
        yield data[7:]

    assert await c.add(chunks()) == cid  # async chunks in: the same CID
    assert await c.add(iter([data[:5], data[5:]])) == cid
    folder = work / "in"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_bytes(b"A")
    (folder / "sub" / "b.txt").write_bytes(b"B")
    (work / "one.bin").write_bytes(data)
    assert await c.add(work / "one.bin") == cid
    with open(work / "one.bin", "rb") as fh:
        assert await c.add(fh) == cid
    root = await c.add(folder, recursive=True)
    listing = await c.ls(root)
    assert [(e.name, e.type) for e in listing] == [("a.txt", "file"), ("sub", "directory")]
    assert isinstance(listing[0], Entry)
    assert [e.name async for e in c.iter_ls(root)] == ["a.txt", "sub"]
    assert await c.cat(f"{root}/sub/b.txt") == b"B"
    assert (await c.stat(f"{root}/sub")).type == "directory"
    out = await c.get(root, work / "out")
    assert (out / "sub" / "b.txt").read_bytes() == b"B"
    assert (await c.get(cid, work / "file.out")).read_bytes() == data
    with pytest.raises(IpfsKitError, match="is a folder"):
        await c.add(folder)


async def pins(c: AsyncClient) -> None:
    one = await c.add_bytes(b"pin me", pin=False)
    two = await c.add_bytes(b"pin me too", pin=False)
    assert await c.pin.add(one, name="first") == [one]
    assert Pin(one, "recursive", "first") in await c.pin.ls(type="recursive")
    assert (await c.pin.ls(one))[0].type == "recursive"
    changed = await c.pin.update(one, two)
    assert changed["Pins"] == [one, two]
    assert [p.cid for p in await c.pin.ls(type="recursive")].count(two) == 1
    assert all(doc.get("Ok", True) for doc in await c.pin.verify())
    assert await c.pin.rm(two) == [two]
    assert await c.pin.queue() == []
    with pytest.raises(ApiError, match="not pinned"):
        await c.pin.rm(two)


async def blocks_and_dags(c: AsyncClient, work: Path) -> None:
    block = await c.block.put(b"blk")
    assert await c.block.get(block) == b"blk"
    assert (await c.block.stat(block)).size == 3
    node = await c.dag.put({"hello": "world", "link": {"/": block}}, pin=True)
    assert node.startswith("bafyrei")
    assert await c.dag.get(node) == {"hello": "world", "link": {"/": block}}
    assert await c.dag.resolve(f"{node}/link") == block
    assert (await c.dag.stat(node))["UniqueBlocks"] == 2
    car = b"".join([chunk async for chunk in c.dag.export(node)])
    (work / "node.car").write_bytes(car)
    assert await c.dag.import_(work / "node.car") == [node]
    assert await c.dag.import_(car, pin_roots=False) == []  # roots are listed when pinned
    with pytest.raises(ApiError, match="pinned"):  # the node's pin covers what it links to
        await c.block.rm(block)
    assert await c.pin.rm(node) == [node]
    assert await c.block.rm(block) == block
    with pytest.raises(ApiError, match="not found"):
        await c.block.get(block)


async def pubsub_and_swarm(c: AsyncClient, other: Daemon) -> None:
    topic = "ünï topic"
    got: list[Message] = []

    async def listen() -> None:  # the subscription starts with the first iteration
        async with contextlib.aclosing(c.pubsub.subscribe(topic)) as messages:
            async for message in messages:
                got.append(message)
                return

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(listen)
            while topic not in await c.pubsub.ls():
                await anyio.sleep(0.05)
            await c.pubsub.publish(topic, b"hello")
    assert got[0].data == b"hello" and got[0].topics == (topic,)
    assert await c.pubsub.peers(topic) == []
    connected = await c.swarm.connect(other.addr)
    assert connected and other.peer_id in connected[0]
    assert other.peer_id in [p.id for p in await c.swarm.peers()]


async def tasks(c: AsyncClient, work: Path) -> None:
    cid = await c.add_bytes(b"task input")
    task = await c.task.submit("sha256", [cid])  # no worker: it waits in the queue
    info = await c.task.status(task)
    assert isinstance(info, TaskInfo) and info.state == "queued"
    many = await c.task.submit_many([{"handler": "noop", "task_id": "t-async-1"}])
    assert many.accepted == ("t-async-1",)
    assert (await c.task.cancel(task)).state == "cancelled"
    assert (await c.task.wait(task, 5)).state == "cancelled"
    with pytest.raises(TaskFailedError, match="cancelled"):
        await c.task.result(task)
    assert task in [t.id for t in await c.task.list()]
    assert [t.id for t in await c.task.list("cancelled")] == [task]
    assert (await c.task.stats()).get("cancelled") == 1
    assert await c.workers() == []
    assert "Workers" in await c.cluster_state() or await c.cluster_state() is not None
    assert (await c.repo_stat())["NumObjects"] >= 1
    assert b"ipfs_kit" in await c.http_get("/metrics")


async def errors(c: AsyncClient, work: Path) -> None:
    with pytest.raises(ApiError) as bad:
        await c.cat("nope")
    assert bad.value.status == 400 and "not a CID" in str(bad.value)
    data = os.urandom(600_000)
    cid = await c.add_bytes(data, pin=False)
    folder = await c.dag.get(cid)
    await c.block.rm(folder["Links"][-1]["Hash"]["/"])  # the last leaf is gone
    # Fails part-way (after the first leaves went out): the daemon's message comes in the
    # X-Stream-Error trailer, on the unix socket as on the TCP RPC.
    with pytest.raises(ApiError, match=r"not found in the store"):
        await c.cat(cid)
    with pytest.raises(ApiError, match=r"not found in the store"):
        async for _ in c.iter_cat(cid):
            pass
    assert (await c.id()).id  # the pool is still usable


async def exercise(d: Daemon, other: Daemon, work: Path, api: str | None) -> None:
    async with AsyncClient(api, repo=d.repo) as c:
        assert (await c.id()).id == (await c.status()).id
        await files(c, work)
        await pins(c)
        await blocks_and_dags(c, work)
        # Before the other node connects: no worker takes the task, and a missing block
        # fails at once instead of being asked of a peer.
        await tasks(c, work)
        await errors(c, work)
        await pubsub_and_swarm(c, other)


Run = Callable[[Callable[[], Awaitable[None]]], None]
RUNNERS: dict[str, Run] = {"trio": lambda fn: trio.run(fn),
                           "asyncio": lambda fn: asyncio.run(fn())}  # type: ignore[arg-type]


@pytest.mark.parametrize("runner", ["trio", "asyncio"])
@pytest.mark.parametrize("over", ["socket", "tcp"])
def test_async_client(daemon: MakeDaemon, short_tmp: Path, runner: str, over: str) -> None:
    d = daemon("master").start()
    other = daemon(name="other").start()
    api = d.rpc_url if over == "tcp" else None
    RUNNERS[runner](lambda: exercise(d, other, short_tmp, api))


def test_async_no_daemon(short_tmp: Path) -> None:
    async def main() -> None:
        async with AsyncClient(repo=str(short_tmp)) as c:
            await c.id()

    with pytest.raises(DaemonNotRunningError, match="no ipfs-kit-node daemon"):
        asyncio.run(main())
    with pytest.raises(DaemonNotRunningError):
        trio.run(main)
