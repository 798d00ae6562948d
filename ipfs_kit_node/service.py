"""The one interface every long-lived part of the node implements."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import trio

if TYPE_CHECKING:
    # py-libp2p depends on trio-typing, whose trio-stubs mypy prefers to trio's own types;
    # those stubs name the task-status type here.
    from trio_typing import TaskStatus
else:
    from trio import TaskStatus

__all__ = ["Service", "TaskStatus"]


class Service(Protocol):
    """Runs until cancelled; calls ``task_status.started()`` once it is usable.

    An error raised before ``started()`` fails the node's start; the node cancels services
    in the reverse of the order it started them.
    """

    name: str

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None: ...
