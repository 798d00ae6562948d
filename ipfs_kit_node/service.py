"""The one interface every long-lived part of the node implements."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

import trio

from .logs import get_logger

if TYPE_CHECKING:
    # py-libp2p depends on trio-typing, whose trio-stubs mypy prefers to trio's own types;
    # those stubs name the task-status type here.
    from trio_typing import TaskStatus
else:
    from trio import TaskStatus

__all__ = ["Service", "TaskStatus", "keep_running"]

log = get_logger(__name__)


class Service(Protocol):
    """Runs until cancelled; calls ``task_status.started()`` once it is usable.

    An error raised before ``started()`` fails the node's start; the node cancels services
    in the reverse of the order it started them.
    """

    name: str

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None: ...


async def keep_running(name: str, loop: Callable[[], Awaitable[None]],
                       backoff: float = 1.0, max_backoff: float = 30.0) -> None:
    """The edge guard of a long-lived loop: an exception is logged and the loop restarted
    after a growing pause, so one bad input or bug stops that loop for a moment, never the
    node. Cancellation passes through (``trio.Cancelled`` is not an ``Exception``)."""
    pause = backoff
    while True:
        started = trio.current_time()
        try:
            await loop()
            return
        except Exception as exc:
            if trio.current_time() - started > max_backoff:
                pause = backoff  # it ran well for a while: this is a new failure
            log.error("loop failed; restarting", loop=name, pause_s=pause,
                      error=f"{type(exc).__name__}: {exc}"[:500], exc_info=True)
            await trio.sleep(pause)
            pause = min(pause * 2, max_backoff)
