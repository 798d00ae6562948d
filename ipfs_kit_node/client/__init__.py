"""The Python API: ``Client`` (sync, stdlib only: light enough for the CLI, which uses it),
``AsyncClient`` (h11 on anyio: trio and asyncio alike), typed answers, the task executor.

``AsyncClient``, the executor and the answer types load on first use, so ``Client`` alone
stays cheap.
"""

from __future__ import annotations

from ._sync import Client, RangeReader, Streamed
from ._wire import task_doc

TYPE_CHECKING = False  # importing typing costs a CLI command ~4 ms
if TYPE_CHECKING:
    from typing import Any

    from ._async import AsyncClient
    from .executor import TaskExecutor, TaskFuture
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

_TYPES = ("BlockStat", "Entry", "Message", "NodeId", "Peer", "Pin", "RemotePin", "Stat",
          "Status", "Submitted", "TaskInfo", "Worker")


def __getattr__(name: str) -> Any:
    if name in _TYPES:
        from . import types

        return getattr(types, name)
    if name == "AsyncClient":
        from ._async import AsyncClient

        return AsyncClient
    if name in ("TaskExecutor", "TaskFuture"):
        from . import executor

        return getattr(executor, name)
    raise AttributeError(name)


__all__ = [
    "AsyncClient",
    "BlockStat",
    "Client",
    "Entry",
    "Message",
    "NodeId",
    "Peer",
    "Pin",
    "RangeReader",
    "RemotePin",
    "Stat",
    "Status",
    "Streamed",
    "Submitted",
    "TaskExecutor",
    "TaskFuture",
    "TaskInfo",
    "Worker",
    "task_doc",
]
