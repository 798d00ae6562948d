"""The memory tier: a byte-budgeted, scan-resistant, frequency-aware cache (W-TinyLFU style).

Layout: a small LRU *window* in front of a segmented-LRU *main* area (probation + protected).
New blocks enter the window; a block leaving the window is admitted to main only if it is
hotter than each block it would push out, so a scan or a burst of one-off reads cannot flush
the blocks that are read again and again. A hit in probation promotes to protected. Sizes are
in bytes: a large candidate must beat every victim it displaces.

Heat here is the tier's own short-horizon score: access count, halved every 10x (cached
entries) accesses (TinyLFU's aging), saturating at 12 (TinyLFU's counters stop at 15; an
uncapped count of a block that was very hot took five halvings to fall back, so a hot set that
moved kept losing admission to stale residents): past the cap hot blocks tie, and a tie keeps
the resident block, which is what lets a cyclic scan freeze part of itself in instead of
churning. The store's index keeps the long-horizon, wall-clock heat that GC and the remote tier
use and that survives restarts; a block unknown to this tier (after a restart) starts from the
index heat passed to ``put``.

The window's share adapts the way ARC sizes its two lists, from ghosts (keys only, half the
cached entry count each): a miss on a key the window let go unadmitted grows the window, a
miss on a key main evicted shrinks it, by one entry times the ratio of the two ghost sizes.
This replaced hill climbing on the hit ratio sampled per period (Caffeine's way): on a hot set
that moves every few thousand requests, the sampled ratio swings with the phase more than with
the window and the climber wandered (it trailed ARC by up to 3.6 points; the ghosts answer on
each miss). The aging period shrinks as the window grows (10x down to 1x entries), so counts
are forgotten faster when recency is what pays. A young tier takes larger steps (24x the ARC
step at the first access, falling linearly to 1x over 8x entries accesses; Caffeine's climber
likewise starts with large steps and decays them): from a 1% window, one ARC step per ghost
miss took ~20,000 reads at 2,000 entries to reach the share a hot set moving every 1k-5k reads
wants, and those first reads alone put the tier 0.1-0.3 points under ARC on the whole run.
The span is in accesses, not in blocks of misses: a trace that hits 97% (w106) would have
kept the large steps for millions of reads and swung the window from 0 to 1 (-0.3 points).

Aging is still too slow when the whole hot set moves: the old hot keys keep protected and
counts above the new hot keys' for one or two periods, so the new keys only live in the window
(on a Zipf whose ranking is reshuffled every 5k-20k reads this trailed ARC by up to 2.4
points). So the tier watches for a shift (``_check_shift``): once per block of misses it
compares the block's hit ratio with the previous four blocks'; a drop by a quarter and by 3x
the usual block-to-block swing, while the window holds >= 40% (the ghosts already say recency
pays) or the block's ratio is under 0.6x the baseline and below it by 5x the swing, keeps an
eighth of every count and empties protected into probation. The window condition and the swing
keep it off static frequencies, loops and the real traces (their dips are short scans that the
old hot set outlives; calling those shifts lost up to 1 point on w106). The deep way in is for
long phases: there frequency paid for so long that the window is small when the set moves. Its
5x-swing condition spares multi2, whose deep dips come on a ratio that swings 9-14 points a
block, against 3-6 on a Zipf. A shift rarely lines up with a block: the block that straddles
it drops part way and lowers the next block's baseline, and the next block (37% against 61%)
then misses the deep threshold; on a Zipf reshuffled every 20k reads at 2,000 entries two of
nine shifts went uncalled and each cost 2-5 points for a whole phase. So a shift is also
called when the mean of the last three blocks is under 0.75x the four blocks before them and
below them by 4x the swing (``_held_drop``): a scan's dip recovers within a block or two, a
moved hot set's does not. Keeping an eighth of the counts rather than a quarter lets the new
hot keys win admission sooner (a quarter left 4 of 48 shifting runs, six seeds, under ARC; a
full reset did as well on them but put w106 at 6,879 entries 0.28 under ARC). With these the
shifting-Zipf cases went from a mean of +0.25 points over ARC (the four at 2,000 entries
0.1-0.6 below it) to +0.62, every one at or above ARC. Costs one decrement per miss.

Pure and synchronous: no I/O, no trio. ``get`` is the hot path and is kept flat on purpose.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

AGE_EVERY = 10  # halve all heat every AGE_EVERY x (cached entries) accesses
FORGET_BELOW = 0.5  # at each halving, forget keys whose count is below this
MAX_WINDOW = 1.0  # the window's largest share of the budget
AGE_MIN = 1.0  # the shortest aging period, x (cached entries) accesses
GHOST_SHARE = 0.5  # each ghost list holds up to this x (cached entries) keys
# Shift detection: the hit ratio is sampled once per block of misses (see _check_shift).
SHIFT_BLOCK = 0.125  # a block is this x (cached entries) misses ...
SHIFT_BLOCK_MIN = 64  # ... and at least this many
SHIFT_BASE = 4  # the baseline is the mean hit ratio of this many previous blocks
SHIFT_DROP = 0.75  # a block below this x baseline ...
SHIFT_SIGMAS = 3.0  # ... and below it by this x the usual block-to-block swing is a shift
SHIFT_WINDOW = 0.4  # only while the window holds at least this share (recency is paying)
SHIFT_DEEP = 0.6  # ... or whatever the window, when the block is below this x baseline
SHIFT_DEEP_SIGMAS = 5.0  # ... and below it by this x the usual swing
SHIFT_WARMUP = 16  # blocks seen before the first verdict
SHIFT_COOLDOWN = 8  # blocks after a shift before the next one can be called
SHIFT_HELD = 3  # or whatever the window, when the mean of this many blocks (the latest
SHIFT_HELD_DROP = 0.75  # included) is below this x the baseline of the blocks before them ...
SHIFT_HELD_SIGMAS = 4.0  # ... and below it by this x the usual swing
SHIFT_KEEP = 0.125  # a shift multiplies every count by this
# The ghosts' step while the tier is young (see _adapt).
STEP_START = 24.0  # the first access's step is this x the ARC step ...
STEP_SPAN = 8  # ... falling linearly to 1x over this x (cached entries) accesses


@dataclass
class MemoryStats:
    hits: int = 0
    misses: int = 0
    admitted: int = 0
    rejected: int = 0
    evicted: int = 0

    @property
    def hit_ratio(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class MemoryTier:
    """Byte-budgeted W-TinyLFU with its own lazily aged access counts."""

    def __init__(
        self,
        budget: int,
        *,
        window_share: float = 0.01,
        protected_share: float = 0.80,
        adaptive: bool = True,
        heat_cap: float = 12.0,
    ) -> None:
        if budget < 0:
            raise ValueError("budget must not be negative")
        self._heat_cap = heat_cap
        self._protected_share = protected_share
        self._window: OrderedDict[Hashable, bytes] = OrderedDict()
        self._probation: OrderedDict[Hashable, bytes] = OrderedDict()
        self._protected: OrderedDict[Hashable, bytes] = OrderedDict()
        self._where: dict[Hashable, OrderedDict[Hashable, bytes]] = {}
        self._window_bytes = self._probation_bytes = self._protected_bytes = 0
        self.hits = self.misses = 0
        self.admitted = self.rejected = self.evicted = 0
        # Heat: key -> access count, halved every _age_period accesses.
        self._heat: dict[Hashable, float] = {}
        self._age_countdown = 1000
        self._mean_size = 4096.0  # running mean block size: capacity in entries = budget/mean
        self._adaptive = adaptive
        self._window_share = window_share
        # Ghosts: keys the window let go unadmitted, and keys main evicted (LRU order).
        self._ghost_window: OrderedDict[Hashable, None] = OrderedDict()
        self._ghost_main: OrderedDict[Hashable, None] = OrderedDict()
        # Shift detector state (_check_shift).
        self._block_left = SHIFT_BLOCK_MIN
        self._block_mark = (0, 0)  # (accesses, hits) at the start of the block
        self._recent: list[float] = []  # hit ratios of the last SHIFT_BASE blocks
        self._swing = 0.05  # running mean |ratio - previous ratio|
        self._blocks = 0
        self._cooldown = 0
        self.shifts = 0
        self._step = STEP_START  # multiplies the ghosts' step (_adapt); 1.0 once grown up
        self.budget = budget
        self._set_limits()
        self._age_countdown = AGE_EVERY * self._capacity_entries()

    # -- queries -----------------------------------------------------------------------------

    def __contains__(self, key: Hashable) -> bool:
        return key in self._where

    def __len__(self) -> int:
        return len(self._where)

    @property
    def bytes_used(self) -> int:
        return self._window_bytes + self._probation_bytes + self._protected_bytes

    @property
    def window_share(self) -> float:
        return self._window_share

    @property
    def stats(self) -> MemoryStats:
        return MemoryStats(self.hits, self.misses, self.admitted, self.rejected, self.evicted)

    def heat(self, key: Hashable) -> float:
        count = self._heat.get(key, 0.0)
        return count if count < self._heat_cap else self._heat_cap

    # -- access ------------------------------------------------------------------------------

    def get(self, key: Hashable) -> bytes | None:
        """A read: counts towards the key's heat whether or not the block is cached."""
        heat = self._heat
        count = heat.get(key, 0.0)
        if count < self._heat_cap:  # saturates, as TinyLFU's 4-bit counters do (see _age)
            heat[key] = count + 1.0
        self._age_countdown -= 1
        if not self._age_countdown:
            self._age()
        segment = self._where.get(key)
        if segment is None:
            self.misses += 1
            return None
        self.hits += 1
        if segment is self._probation:
            data = segment.pop(key)
            self._protected[key] = data
            self._where[key] = self._protected
            self._probation_bytes -= len(data)
            self._protected_bytes += len(data)
            if self._protected_bytes > self._protected_limit:
                self._demote_protected_overflow()
            return data
        segment.move_to_end(key)
        return segment[key]

    def put(self, key: Hashable, data: bytes, heat: float = 0.0) -> None:
        """Offer a block after a miss; it may be refused at admission.

        ``heat`` seeds the score of a key this tier has not seen (the index's heat).
        """
        size = len(data)
        if key in self._where or size > self.budget:
            return
        self._mean_size += (size - self._mean_size) * 0.01
        self._block_left -= 1
        if not self._block_left:
            self._check_shift()
        if self._adaptive and (key in self._ghost_window or key in self._ghost_main):
            self._adapt(key)
        if heat and key not in self._heat:
            self._heat[key] = min(heat, self._heat_cap)
        self._window[key] = data
        self._where[key] = self._window
        self._window_bytes += size
        if self._window_bytes > self._window_limit:
            self._shrink_window()
        if self._window_bytes + self._probation_bytes + self._protected_bytes > self.budget:
            # The window grew (a window-ghost miss) into space main still occupies.
            self._evict_to_budget()

    def discard(self, key: Hashable) -> None:
        segment = self._where.pop(key, None)
        if segment is not None:
            self._account(segment, -len(segment.pop(key)))

    def resize(self, budget: int) -> None:
        self.budget = budget
        self._set_limits()
        self._shrink_window()
        self._evict_to_budget()

    # -- internals ---------------------------------------------------------------------------

    def _set_limits(self) -> None:
        self._window_limit = max(1, int(self.budget * self._window_share))
        self._protected_limit = int((self.budget - self._window_limit) * self._protected_share)

    def _account(self, segment: OrderedDict[Hashable, bytes], delta: int) -> None:
        if segment is self._window:
            self._window_bytes += delta
        elif segment is self._probation:
            self._probation_bytes += delta
        else:
            self._protected_bytes += delta

    def _shrink_window(self) -> None:
        window = self._window
        while self._window_bytes > self._window_limit and window:
            key, data = window.popitem(last=False)
            del self._where[key]
            self._window_bytes -= len(data)
            self._admit(key, data)

    def _admit(self, key: Hashable, data: bytes) -> None:
        """A window leaver enters probation if it beats every victim it displaces."""
        size = len(data)
        excess = self.bytes_used + size - self.budget
        if excess > 0:
            heat = self.heat
            candidate_heat = heat(key)
            victims: list[tuple[OrderedDict[Hashable, bytes], Hashable]] = []
            for segment in (self._probation, self._protected):
                for victim in segment:
                    if excess <= 0:
                        break
                    # A tie keeps the resident block: what makes a cyclic scan freeze part
                    # of itself in instead of churning.
                    if candidate_heat <= heat(victim):
                        self.rejected += 1
                        ghosts = self._ghost_window  # inline _remember: the common refusal
                        ghosts[key] = None
                        if len(ghosts) > len(self._where) * GHOST_SHARE:
                            ghosts.popitem(last=False)
                        return
                    victims.append((segment, victim))
                    excess -= len(segment[victim])
                if excess <= 0:
                    break
            if excess > 0:
                self.rejected += 1
                self._remember(self._ghost_window, key)
                return
            for segment, victim in victims:
                del self._where[victim]
                self._remember(self._ghost_main, victim)
                self._account(segment, -len(segment.pop(victim)))
            self.evicted += len(victims)
        self._probation[key] = data
        self._where[key] = self._probation
        self._probation_bytes += size
        self.admitted += 1

    def _remember(self, ghosts: OrderedDict[Hashable, None], key: Hashable) -> None:
        ghosts[key] = None
        if len(ghosts) > len(self._where) * GHOST_SHARE:
            ghosts.popitem(last=False)

    def _adapt(self, key: Hashable) -> None:
        """A miss on a ghost: move the window share towards the side that would have hit."""
        ghost_window, ghost_main = self._ghost_window, self._ghost_main
        if key in ghost_window:
            del ghost_window[key]
            entries = max(len(ghost_main) / max(len(ghost_window), 1), 1.0) * self._step
            share = min(MAX_WINDOW, self._window_share + entries / max(len(self._where), 1))
        elif key in ghost_main:
            del ghost_main[key]
            entries = max(len(ghost_window) / max(len(ghost_main), 1), 1.0) * self._step
            share = max(0.0, self._window_share - entries / max(len(self._where), 1))
        else:
            return
        shrinking = share < self._window_share
        self._window_share = share
        self._set_limits()
        if shrinking:  # before the new block lands, as a smaller window would have been
            self._shrink_window()

    def _check_shift(self) -> None:
        """Once per block of misses: did the hot set just move? (See the module docstring.)
        The 3x-swing condition keeps the sawtooth of a loop or a noisy trace from counting;
        on a shift the new hot keys then win admission and the old ones leave unless read."""
        self._block_left = max(SHIFT_BLOCK_MIN, int(SHIFT_BLOCK * self._capacity_entries()))
        accesses, hits = self.hits + self.misses, self.hits
        if self._step > 1.0:
            young = 1.0 - accesses / (STEP_SPAN * self._capacity_entries())
            self._step = 1.0 + (STEP_START - 1.0) * max(young, 0.0)
        (mark_accesses, mark_hits), self._block_mark = self._block_mark, (accesses, hits)
        if not mark_accesses or accesses == mark_accesses:
            return  # the first block (or puts without gets): no ratio yet
        ratio = (hits - mark_hits) / (accesses - mark_accesses)
        recent = self._recent
        held = SHIFT_HELD - 1  # earlier blocks in the held mean
        if len(recent) < SHIFT_BASE + held:
            recent.append(ratio)
            return
        base = sum(recent[-SHIFT_BASE:]) / SHIFT_BASE
        self._blocks += 1
        if self._cooldown:
            self._cooldown -= 1
        elif (self._blocks > SHIFT_WARMUP and self.bytes_used * 10 >= self.budget * 9 and (
                (ratio < base * SHIFT_DROP and base - ratio > SHIFT_SIGMAS * self._swing
                 and (self._window_share >= SHIFT_WINDOW or (
                     ratio < base * SHIFT_DEEP
                     and base - ratio > SHIFT_DEEP_SIGMAS * self._swing)))
                or self._held_drop(ratio, held))):
            self._cooldown = SHIFT_COOLDOWN
            self.shifts += 1
            self._forget()
        self._swing += (abs(ratio - recent[-1]) - self._swing) * 0.03
        del recent[0]
        recent.append(ratio)

    def _held_drop(self, ratio: float, held: int) -> bool:
        """The hit ratio stayed down over the last SHIFT_HELD blocks: a shift whose first
        block straddled it (half old phase, half new) lowers the one-block baseline and
        leaves the next block just short of the deep threshold; the held mean is not."""
        recent = self._recent
        mean = (sum(recent[-held:]) + ratio) / SHIFT_HELD if held else ratio
        before = recent[-(SHIFT_BASE + held):len(recent) - held]
        base = sum(before) / SHIFT_BASE
        return mean < base * SHIFT_HELD_DROP and base - mean > SHIFT_HELD_SIGMAS * self._swing

    def _forget(self) -> None:
        """The hot set moved: shrink every count (SHIFT_KEEP) and demote all of protected."""
        keep = SHIFT_KEEP
        self._heat = {k: v * keep for k, v in self._heat.items() if v * keep >= FORGET_BELOW / 2}
        probation, where = self._probation, self._where
        for key, data in self._protected.items():
            probation[key] = data
            where[key] = probation
        self._probation_bytes += self._protected_bytes
        self._protected_bytes = 0
        self._protected.clear()

    def _demote_protected_overflow(self) -> None:
        protected, probation = self._protected, self._probation
        while self._protected_bytes > self._protected_limit and protected:
            key, data = protected.popitem(last=False)
            probation[key] = data
            self._where[key] = probation
            self._protected_bytes -= len(data)
            self._probation_bytes += len(data)

    def _evict_to_budget(self) -> None:
        while self.bytes_used > self.budget:
            for segment in (self._probation, self._protected, self._window):
                if segment:
                    key, data = segment.popitem(last=False)
                    del self._where[key]
                    self._account(segment, -len(data))
                    self._remember(
                        self._ghost_window if segment is self._window else self._ghost_main, key)
                    self.evicted += 1
                    break
            else:
                return

    def _capacity_entries(self) -> int:
        # While the tier fills, its entry count underestimates what it will hold.
        return max(len(self._where), int(self.budget / max(self._mean_size, 1.0)), 100)

    def _age(self) -> None:
        """Every count halves; keys that fell below a quarter of an access are forgotten."""
        # The more the climber favours recency (a larger window), the shorter the memory of
        # frequency: a hot set that moves leaves stale counts behind that block admission.
        self._age_countdown = int(max(AGE_MIN, AGE_EVERY * (1.0 - self._window_share))
                                  * self._capacity_entries())
        self._heat = {k: v * 0.5 for k, v in self._heat.items() if v >= FORGET_BELOW}
