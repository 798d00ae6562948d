"""Heat: access frequency with exponential recency decay.

A block's heat is its access count, halved once per elapsed half-life. The decay is stepwise
(the clock is cut into epochs one half-life long) and applied lazily when a score is read, so an
untouched block costs nothing. Stepwise rather than continuous on purpose: between two epoch
boundaries two blocks read equally often have *equal* heat, and a tie keeps the resident block
in memory. That is what makes admission scan-resistant (TinyLFU halves its sketch the same way);
a continuously decaying score always favours the block touched last and degrades into LRU.

The clock is injectable: wall-clock seconds in the daemon, an access counter in benchmarks.
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


class HeatTable:
    """Heat of arbitrary keys, for callers without an index of their own (benchmarks, tests)."""

    def __init__(self, model: HeatModel) -> None:
        self.model = model
        self._heat: dict[object, tuple[float, int]] = {}

    def touch(self, key: object) -> None:
        # HeatModel.touch inlined: this runs once per access in benchmarks.
        now = int(self.model.clock() // self.model.half_life)
        entry = self._heat.get(key)
        if entry is None:
            self._heat[key] = (1.0, now)
        elif entry[1] == now:
            self._heat[key] = (entry[0] + 1.0, now)
        else:
            self._heat[key] = (entry[0] * 0.5 ** (now - entry[1]) + 1.0, now)

    def get(self, key: object) -> float:
        entry = self._heat.get(key)
        return 0.0 if entry is None else self.model.value(*entry)


class AccessClock:
    """A clock that ticks once per access: half-lives counted in accesses, not seconds."""

    def __init__(self) -> None:
        self.ticks = 0

    def tick(self) -> None:
        self.ticks += 1

    def __call__(self) -> float:
        return float(self.ticks)
