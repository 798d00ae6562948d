"""Heat: access frequency with exponential recency decay.

A block's heat is its access count, halved once per elapsed half-life. The decay is stepwise
(the clock is cut into epochs one half-life long) and applied lazily when a score is read, so an
untouched block costs nothing. Stepwise, like TinyLFU's halving: blocks read equally often
within an epoch tie, rather than the one touched last always winning. Heat orders GC and
eviction to the remote tier, survives restarts in the index, and seeds the memory tier's own
short-horizon counts after a restart (memory.py).

The clock is injectable (wall-clock seconds in the daemon; tests pass their own).
"""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]


class HeatModel:
    """Pure arithmetic on (count, epoch) pairs; it stores nothing itself."""

    __slots__ = ("clock", "half_life")

    def __init__(self, half_life: float, clock: Clock = time.time) -> None:
        if half_life <= 0:
            raise ValueError("half_life must be positive")
        self.half_life = half_life
        self.clock = clock

    def epoch(self) -> int:
        return int(self.clock() // self.half_life)

    def value(self, count: float, epoch: int, now: int | None = None) -> float:
        """The heat now of a block last touched in ``epoch`` with ``count``."""
        elapsed = (self.epoch() if now is None else now) - epoch
        return count if elapsed <= 0 else count * 0.5**elapsed

    def touch(self, count: float, epoch: int) -> tuple[float, int]:
        """One more access: decay to the current epoch, then add one."""
        now = self.epoch()
        return self.value(count, epoch, now) + 1.0, now
