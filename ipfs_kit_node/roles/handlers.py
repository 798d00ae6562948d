"""Task handlers: what a worker runs for a task, registered under the entry-point group
``ipfs_kit_node.tasks``. Handlers read inputs by CID and write outputs as UnixFS files, through
a ``TaskContext``; they never see the network or the store directly, and a task can only name
a handler, never code (the worker also checks the name against its allow-list).

Built-ins: ``sha256`` (hex digest of a file's content), ``unixfs-stat`` (JSON: type, size,
links of each input), ``concat`` (the inputs' bytes, one after the other, as a new file),
``noop`` (nothing, no output: for benchmarks).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Protocol

import trio

from ..cid import CidLike
from ..errors import IpfsKitError
from ..protocols.tasks import Task
from ..unixfs.exporter import cat, resolve
from ..unixfs.importer import FileBuilder
from ..unixfs.params import KUBO_DEFAULT, Block, ImportParams

ENTRY_POINT_GROUP = "ipfs_kit_node.tasks"


class HandlerError(IpfsKitError):
    """The task cannot be run as asked (unknown handler, bad inputs, bad parameters)."""


class BlockStore(Protocol):
    async def get(self, cid: CidLike) -> bytes: ...

    async def put(self, cid: CidLike, data: bytes) -> bool: ...


@dataclass
class TaskContext:
    """What a handler may do: read inputs, write outputs. Reads are verified block by block."""

    blocks: BlockStore
    params: ImportParams = KUBO_DEFAULT
    written: list[str] = field(default_factory=list)

    async def read(self, cid: str) -> AsyncIterator[bytes]:
        async for chunk in cat(self.blocks, cid):
            yield bytes(chunk)  # a handler's own bytes, not a view pinning the block

    async def stat(self, cid: str) -> dict[str, object]:
        node = await resolve(self.blocks, cid)
        return {"cid": cid, "type": node.kind, "size": node.size, "links": len(node.links)}

    async def write(self, chunks: AsyncIterator[bytes] | list[bytes]) -> str:
        """Store bytes as a UnixFS file; returns its root CID."""
        builder = FileBuilder(self.params)
        buffer = bytearray()

        async def put_all(blocks: list[Block]) -> None:
            for block in blocks:
                await self.blocks.put(block.cid, block.data)

        async for chunk in _aiter(chunks):
            buffer += chunk
            while len(buffer) >= self.params.chunk_size:
                await put_all(builder.add_chunk(bytes(buffer[:self.params.chunk_size])))
                del buffer[:self.params.chunk_size]
        if buffer:
            await put_all(builder.add_chunk(bytes(buffer)))
        blocks, entry = builder.finish()
        await put_all(blocks)
        root = str(entry.cid)
        self.written.append(root)
        return root


async def _aiter(chunks: AsyncIterator[bytes] | list[bytes]) -> AsyncIterator[bytes]:
    if isinstance(chunks, list):
        for chunk in chunks:
            yield chunk
    else:
        async for chunk in chunks:
            yield chunk


Handler = Callable[[TaskContext, Task], Awaitable[str | None]]  # the output CID, if any


async def sha256(ctx: TaskContext, task: Task) -> str:
    if len(task.inputs) != 1:
        raise HandlerError("sha256 takes exactly one input")
    digest = hashlib.sha256()
    async for chunk in ctx.read(task.inputs[0]):
        digest.update(chunk)
    return await ctx.write([digest.hexdigest().encode() + b"\n"])


async def unixfs_stat(ctx: TaskContext, task: Task) -> str:
    if not task.inputs:
        raise HandlerError("unixfs-stat needs at least one input")
    stats = [await ctx.stat(cid) for cid in task.inputs]
    return await ctx.write([json.dumps(stats, indent=1).encode() + b"\n"])


async def concat(ctx: TaskContext, task: Task) -> str:
    if not task.inputs:
        raise HandlerError("concat needs at least one input")

    async def chunks() -> AsyncIterator[bytes]:
        for cid in task.inputs:
            async for chunk in ctx.read(cid):
                yield chunk

    return await ctx.write(chunks())


MAX_NOOP_MS = 60_000


async def noop(ctx: TaskContext, task: Task) -> str | None:
    """Nothing, no output: for measuring the mesh itself. ``ms`` makes it take that long."""
    ms = task.params.get("ms", 0)
    if not isinstance(ms, int | float) or isinstance(ms, bool) or not 0 <= ms <= MAX_NOOP_MS:
        raise HandlerError(f"noop: ms must be a number from 0 to {MAX_NOOP_MS}")
    if ms:
        await trio.sleep(ms / 1000)
    return None


BUILTINS: dict[str, Handler] = {"sha256": sha256, "unixfs-stat": unixfs_stat, "concat": concat,
                                "noop": noop}


def load_handlers(allow: set[str] | None = None) -> dict[str, Handler]:
    """Built-ins plus installed plugins (entry points), limited to ``allow`` when given."""
    handlers = dict(BUILTINS)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in handlers:
            handlers[ep.name] = ep.load()
    if allow is not None:
        handlers = {name: h for name, h in handlers.items() if name in allow}
    return handlers


async def run_task(handlers: dict[str, Handler], ctx: TaskContext, task: Task) -> str | None:
    """The output CID (None for none), or HandlerError for a handler not in the allow-list."""
    handler = handlers.get(task.handler)
    if handler is None:
        raise HandlerError(f"handler {task.handler!r} is not allowed on this worker "
                           f"(allowed: {', '.join(sorted(handlers)) or 'none'})")
    return await handler(ctx, task)
