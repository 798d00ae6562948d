"""The one interface every long-lived part of the node implements."""

from __future__ import annotations

from typing import Protocol

import trio


class Service(Protocol):
    """Runs until cancelled; calls ``task_status.started()`` once it is usable.

    An error raised before ``started()`` fails the node's start; the node cancels services
    in the reverse of the order it started them.
    """

    name: str

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None: ...
