"""Writing a task handler: a decorated plain function.

    from ipfs_kit_node.handler import handler

    @handler                        # inputs as bytes (inputs="file": seekable file objects)
    def word_count(inputs: list[bytes], params: dict) -> bytes:
        return str(sum(len(b.split()) for b in inputs)).encode()

Register it under the ``ipfs_kit_node.tasks`` entry point of your package and name it in the
worker's ``[tasks] handlers`` allow-list; see examples/handler_package. The function runs in a
worker thread (it may block or use the CPU; the node's loop stays free). It returns ``bytes``
(stored as a file: the task's output), a ``pathlib.Path`` (that file's bytes), a CID string
(output already stored), or None (no output). Raising an exception fails the task with its
message; the master retries it as ``[tasks] retries`` says.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import IpfsKitError

if TYPE_CHECKING:
    from .protocols.tasks import Task
    from .roles.handlers import Handler, TaskContext

#: Inputs over this size are spooled to disk in ``inputs="file"`` mode.
SPOOL_BYTES = 8 * 1024 * 1024

UserFunction = Callable[[list[Any], dict[str, Any]], Any]


def handler(fn: UserFunction | None = None, *, inputs: str = "bytes"
            ) -> Any:
    """Make a task handler of ``fn(inputs, params)``; ``inputs="bytes"`` (default) or
    ``"file"``."""
    if inputs not in ("bytes", "file"):
        raise ValueError('inputs must be "bytes" or "file"')

    def wrap(user: UserFunction) -> Handler:
        @functools.wraps(user)
        async def run(ctx: TaskContext, task: Task) -> str | None:
            import trio

            values: list[Any] = []
            for cid in task.inputs:
                if inputs == "bytes":
                    values.append(b"".join([chunk async for chunk in ctx.read(cid)]))
                else:
                    spool = tempfile.SpooledTemporaryFile(SPOOL_BYTES)  # noqa: SIM115
                    async for chunk in ctx.read(cid):
                        spool.write(chunk)
                    spool.seek(0)
                    values.append(spool)
            try:
                out = await trio.to_thread.run_sync(user, values, dict(task.params))
            finally:
                for value in values:
                    if not isinstance(value, bytes):
                        value.close()
            return await _store(ctx, out)

        run.user_function = user  # type: ignore[attr-defined]
        return run

    return wrap(fn) if fn is not None else wrap


async def _store(ctx: TaskContext, out: Any) -> str | None:
    if out is None:
        return None
    if isinstance(out, bytes | bytearray | memoryview):
        return await ctx.write([bytes(out)])
    if isinstance(out, os.PathLike):
        import trio

        data = await trio.to_thread.run_sync(Path(out).read_bytes)
        return await ctx.write([data])
    if isinstance(out, str):
        from .cid import to_cid

        return str(to_cid(out))  # InvalidCidError (the task fails) if it is not a CID
    raise IpfsKitError(f"a handler returns bytes, a Path, a CID or None, not "
                       f"{type(out).__name__}")
