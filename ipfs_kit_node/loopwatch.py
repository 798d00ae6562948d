"""How long one task step holds the event loop: the figure behind "the node froze".

A trio instrument times every task step. Steps over ``WARN_AFTER`` are logged with the task's
name (so a freeze names its culprit), counted, and the longest is kept for the metrics and the
``status`` route. Two clock reads per step cost well under a microsecond each.
"""

from __future__ import annotations

import time

import trio
from trio.abc import Instrument

from .logs import get_logger

log = get_logger(__name__)

WARN_AFTER = 0.1  # seconds one step may hold the loop before it is logged
STALL = 0.05  # steps longer than this count as stalls (the bound)


class LoopWatch(Instrument):
    """Longest task step, and how many steps passed ``STALL``."""

    def __init__(self) -> None:
        self.longest = 0.0
        self.longest_task = ""
        self.stalls = 0
        self._started: float | None = None  # None until a step began under the watch

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._started = time.perf_counter()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if self._started is None:
            return
        took = time.perf_counter() - self._started
        if took > self.longest:
            self.longest = took
            self.longest_task = task.name
        if took < STALL:
            return
        self.stalls += 1
        if took >= WARN_AFTER:
            log.warning("event loop held", task=task.name, ms=round(took * 1000, 1))
