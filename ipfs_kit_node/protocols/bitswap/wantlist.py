"""Client side: what we want, from whom, and what to send next. No I/O; the caller's clock.

Discovery: a block no known peer has is asked of every connected peer as want-have (with
sendDontHave). Peers that answer HAVE, or that have sent us blocks, become *session peers*; each
wanted block goes as want-block to the least loaded session peer that has not said DONT_HAVE,
at most ``window`` outstanding per peer, so a DAG is pulled from several peers at once. A block
that arrives cancels the want everywhere else; a want-block unanswered for ``retry_after``
seconds goes to another peer (or back to discovery); discovery repeats every ``rebroadcast``
seconds. Every decision is a list of ``(peer, WantEntry)`` for the shell to send.

Nothing waits forever: a want lives while someone waits for it. A fetch ``claim``s its want
and ``release``s it when it ends; one that gave up (timeout, cancelled caller) cancels its
want if nobody else waits, and with it every unclaimed want its *session* prefetched (the
reader failed: it will not read them). Prefetched wants nobody claims expire once their
session has been idle for ``idle`` seconds (no fetch running, none started), so a reader that
stops early leaves nothing behind either. A session is any hashable the shell picks (the trio
task reading the DAG).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

from multiformats import CID

from .codec import Presence, WantEntry, WantType

Out = tuple[Hashable, WantEntry]


@dataclass
class Want:
    cid: CID
    since: float
    asked: dict[Hashable, float] = field(default_factory=dict)  # want-block sent at
    haves: set[Hashable] = field(default_factory=set)
    dont_haves: set[Hashable] = field(default_factory=set)
    discovery: set[Hashable] = field(default_factory=set)  # asked want-have
    discovered_at: float | None = None
    waiters: int = 0  # fetches waiting for it now
    session: Hashable | None = None  # who asked for it first


@dataclass
class Session:
    """One reader (a cat, a pin, a task input): when it was last active, fetches running."""

    last: float
    fetching: int = 0


@dataclass
class Dropped:
    """Wants given up: their keys (for the shell's waiters) and the cancels to send."""

    keys: list[bytes] = field(default_factory=list)
    out: list[Out] = field(default_factory=list)


class WantManager:
    def __init__(self, window: int = 32, retry_after: float = 5.0,
                 rebroadcast: float = 10.0, idle: float = 30.0) -> None:
        self.window = window
        self.retry_after = retry_after
        self.rebroadcast = rebroadcast
        self.idle = idle
        self.sessions: dict[Hashable, Session] = {}
        self.peers: set[Hashable] = set()
        self.outstanding: dict[Hashable, int] = {}  # want-blocks in flight per peer
        self.session_peers: dict[Hashable, int] = {}  # peer -> blocks received from it
        self.wants: dict[bytes, Want] = {}  # by multihash
        self.duplicates = 0

    # -- peers -------------------------------------------------------------------------------

    def add_peer(self, peer: Hashable, now: float) -> list[Out]:
        self.peers.add(peer)
        self.outstanding.setdefault(peer, 0)
        out: list[Out] = []
        for want in self.wants.values():  # a new peer hears what we are looking for
            if not want.asked:
                out += self._discover(want, [peer], now)
        return out

    def remove_peer(self, peer: Hashable, now: float) -> list[Out]:
        self.peers.discard(peer)
        self.outstanding.pop(peer, None)
        self.session_peers.pop(peer, None)
        out: list[Out] = []
        for want in self.wants.values():
            want.haves.discard(peer)
            want.discovery.discard(peer)
            if want.asked.pop(peer, None) is not None:
                out += self._assign(want, now)
        return out

    # -- wants -------------------------------------------------------------------------------

    def want(self, cid: CID, now: float, session: Hashable | None = None) -> list[Out]:
        key = bytes(cid.digest)
        if session is not None:
            self._session(session, now)
        if key in self.wants:
            return []
        want = self.wants[key] = Want(cid, now, session=session)
        return self._assign(want, now)

    def cancel(self, cid: CID) -> list[Out]:
        dropped = Dropped()
        if bytes(cid.digest) in self.wants:
            self._drop(bytes(cid.digest), dropped)  # frees its peers' window slots too
        return dropped.out

    # -- who waits ---------------------------------------------------------------------------

    def claim(self, cid: CID, session: Hashable, now: float) -> None:
        """A fetch by ``session`` starts waiting for ``cid``."""
        self._session(session, now).fetching += 1
        want = self.wants.get(bytes(cid.digest))
        if want is not None:
            want.waiters += 1

    def release(self, cid: CID, session: Hashable, now: float, *, gave_up: bool) -> Dropped:
        """That fetch ended. One that gave up drops the want (unless another fetch waits for
        it) and every unclaimed want of its session."""
        state = self._session(session, now)
        state.fetching = max(0, state.fetching - 1)
        key = bytes(cid.digest)
        want = self.wants.get(key)
        if want is not None:
            want.waiters = max(0, want.waiters - 1)
        if not gave_up:
            return Dropped()
        dropped = self.abandon(session)
        if want is not None and want.waiters == 0 and key in self.wants:
            self._drop(key, dropped)
        return dropped

    def abandon(self, session: Hashable) -> Dropped:
        """The session's reader has failed: drop the wants it made that nobody waits for."""
        dropped = Dropped()
        for key in [k for k, w in self.wants.items() if w.session == session and not w.waiters]:
            self._drop(key, dropped)
        return dropped

    def expire(self, now: float) -> Dropped:
        """Drop unclaimed wants whose session is idle (or gone); forget idle sessions."""
        dropped = Dropped()
        for key in [k for k, w in self.wants.items() if not w.waiters and self._idle(w, now)]:
            self._drop(key, dropped)
        owners = {w.session for w in self.wants.values()}
        for session in [s for s, st in self.sessions.items()
                        if s not in owners and not st.fetching and now - st.last > self.idle]:
            del self.sessions[session]
        return dropped

    def _idle(self, want: Want, now: float) -> bool:
        state = self.sessions.get(want.session) if want.session is not None else None
        if state is None:
            return now - want.since > self.idle
        return not state.fetching and now - state.last > self.idle

    def _session(self, session: Hashable, now: float) -> Session:
        state = self.sessions.get(session)
        if state is None:
            state = self.sessions[session] = Session(now)
        state.last = now
        return state

    def _drop(self, key: bytes, dropped: Dropped) -> None:
        want = self.wants.pop(key)
        for peer in want.asked:
            self.outstanding[peer] = max(0, self.outstanding.get(peer, 1) - 1)
        dropped.keys.append(key)
        dropped.out += self._cancels(want, exclude=None)

    # -- events ------------------------------------------------------------------------------

    def on_block(self, peer: Hashable, cid: CID, now: float) -> tuple[bool, list[Out]]:
        """(True if we wanted it, what to send): cancels elsewhere, then more want-blocks."""
        want = self.wants.pop(bytes(cid.digest), None)
        if want is None:
            self.duplicates += 1
            return False, []
        if peer in want.asked:
            self.outstanding[peer] = max(0, self.outstanding.get(peer, 1) - 1)
            del want.asked[peer]
        if peer in self.peers:
            self.session_peers[peer] = self.session_peers.get(peer, 0) + 1
        out = self._cancels(want, exclude=peer)
        for other in want.asked:
            self.outstanding[other] = max(0, self.outstanding.get(other, 1) - 1)
        return True, out + self._pump(now)

    def on_presence(self, peer: Hashable, cid: CID, presence: Presence, now: float
                    ) -> list[Out]:
        if presence is Presence.HAVE and peer in self.peers:
            # Even when another peer already delivered it: a peer holding part of the DAG
            # likely holds the rest, so it joins the session.
            self.session_peers.setdefault(peer, 0)
        want = self.wants.get(bytes(cid.digest))
        if want is None:
            return []
        if presence is Presence.HAVE:
            want.haves.add(peer)
        else:
            want.dont_haves.add(peer)
            want.haves.discard(peer)
            if want.asked.pop(peer, None) is not None:
                self.outstanding[peer] = max(0, self.outstanding.get(peer, 1) - 1)
        return self._assign(want, now) + self._pump(now)

    def tick(self, now: float) -> list[Out]:
        """Timeouts and rebroadcasts; call about once a second."""
        out: list[Out] = []
        for want in list(self.wants.values()):
            for peer, at in list(want.asked.items()):
                if now - at > self.retry_after:
                    del want.asked[peer]
                    self.outstanding[peer] = max(0, self.outstanding.get(peer, 1) - 1)
                    want.dont_haves.add(peer)  # treat silence as "not now"
            if not want.asked:
                last = want.discovered_at if want.discovered_at is not None else want.since
                if now - last > self.rebroadcast:
                    want.dont_haves.clear()
                    want.discovery.clear()
                    want.discovered_at = now
                out += self._assign(want, now)
        return out

    # -- decisions ---------------------------------------------------------------------------

    def _candidates(self, want: Want) -> list[Hashable]:
        pool = want.haves or set(self.session_peers)
        return [p for p in pool if p in self.peers and p not in want.dont_haves
                and p not in want.asked]

    def _assign(self, want: Want, now: float) -> list[Out]:
        if want.asked:
            return []
        candidates = [p for p in self._candidates(want)
                      if self.outstanding.get(p, 0) < self.window]
        if candidates:
            peer = min(candidates, key=lambda p: (self.outstanding.get(p, 0), str(p)))
            want.asked[peer] = now
            self.outstanding[peer] = self.outstanding.get(peer, 0) + 1
            return [(peer, WantEntry(want.cid, want_type=WantType.BLOCK, send_dont_have=True))]
        if self._candidates(want):
            return []  # peers have it but are busy: _pump sends it when one frees up
        fresh = [p for p in self.peers if p not in want.discovery and p not in want.dont_haves]
        return self._discover(want, fresh, now)

    def _discover(self, want: Want, peers: list[Hashable], now: float) -> list[Out]:
        if not peers:
            return []
        want.discovered_at = now
        want.discovery.update(peers)
        entry = WantEntry(want.cid, want_type=WantType.HAVE, send_dont_have=True)
        return [(p, entry) for p in peers]

    def _pump(self, now: float) -> list[Out]:
        out: list[Out] = []
        for want in self.wants.values():
            if not want.asked and self._candidates(want):
                out += self._assign(want, now)
                if all(self.outstanding.get(p, 0) >= self.window for p in self.session_peers
                       if p in self.peers):
                    break
        return out

    def _cancels(self, want: Want, exclude: Hashable | None) -> list[Out]:
        entry = WantEntry(want.cid, cancel=True)
        return [(p, entry) for p in set(want.asked) | want.discovery if p != exclude]
