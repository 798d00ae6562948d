"""AsyncClient against a real daemon, run under trio and under asyncio."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import pytest
import trio
from helpers import Daemon

from ipfs_kit_node import AsyncClient
from ipfs_kit_node.errors import ApiError, DaemonNotRunningError

MakeDaemon = Callable[..., Daemon]


async def exercise(d: Daemon, api: str | None = None) -> None:
    async with AsyncClient(api, repo=d.repo) as c:
        assert (await c.id()).id == (await c.status()).id
        data = os.urandom(600_000)
        cid = await c.add_bytes(data)
        assert await c.cat(cid) == data
        assert await c.cat(cid, 10, 5) == data[10:15]
        assert b"".join([chunk async for chunk in c.iter_cat(cid)]) == data
        assert (await c.stat(cid)).size == len(data)
        assert cid in [p.cid for p in await c.pin_ls(type="recursive")]
        block = await c.block_put(b"blk")
        assert await c.block_get(block) == b"blk"
        task = await c.task_submit("noop")
        assert (await c.task_cancel(task)).state == "cancelled"
        assert await c.workers() == []
        with pytest.raises(ApiError, match="not a CID"):
            await c.cat("nope")


@pytest.mark.parametrize("runner", ["trio", "asyncio"])
def test_async_client_on_trio_and_asyncio(daemon: MakeDaemon, runner: str) -> None:
    d = daemon("master").start()
    if runner == "trio":
        trio.run(exercise, d)
        trio.run(exercise, d, d.rpc_url)  # over the TCP RPC too
    else:
        asyncio.run(exercise(d))


def test_async_no_daemon(short_tmp: object) -> None:
    async def main() -> None:
        async with AsyncClient(repo=str(short_tmp)) as c:
            await c.id()

    with pytest.raises(DaemonNotRunningError):
        asyncio.run(main())
