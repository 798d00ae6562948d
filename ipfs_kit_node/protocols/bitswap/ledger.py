"""Server side: what each peer wants from us and what we owe it. No I/O, no clock.

Kubo's rules: a want-block we can serve gets the block; a want-have gets the block itself when
it is at most 1024 bytes, else HAVE; a block we lack gets DONT_HAVE only if the peer asked for
it (``sendDontHave``), otherwise the want waits in the peer's wantlist and is served when the
block arrives; a want-have never replaces a want-block still pending. Cancels remove wants
and anything still queued for them; a full wantlist replaces the previous one. The shell looks
blocks up (``size`` = None when absent), then drains ``next_batch`` per peer, at most
``max_bytes`` of blocks per message.

Bounded by design: at most ``MAX_WANTS_PER_PEER`` wants (and so tasks) per peer, and a peer's
ledger is forgotten when it disconnects (``forget``, ``retain``); the counters of a peer we no
longer know are not recreated.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from enum import Enum

from multiformats import CID

from .codec import Message, Presence, WantEntry, WantType

INLINE_HAVE_LIMIT = 1024
MAX_WANTS_PER_PEER = 1024


class TaskKind(Enum):
    BLOCK = "block"
    HAVE = "have"
    DONT_HAVE = "dont-have"


@dataclass(frozen=True)
class Task:
    cid: CID
    kind: TaskKind
    size: int
    priority: int


@dataclass
class PeerLedger:
    wants: dict[bytes, WantEntry] = field(default_factory=dict)
    queue: dict[bytes, Task] = field(default_factory=dict)  # insertion order = arrival order
    queued_bytes: int = 0
    blocks_sent: int = 0
    bytes_sent: int = 0
    blocks_received: int = 0
    bytes_received: int = 0


class Ledger:
    def __init__(self) -> None:
        self.peers: dict[Hashable, PeerLedger] = {}

    def peer(self, peer: Hashable) -> PeerLedger:
        ledger = self.peers.get(peer)
        if ledger is None:
            ledger = self.peers[peer] = PeerLedger()
        return ledger

    def forget(self, peer: Hashable) -> None:
        self.peers.pop(peer, None)

    def retain(self, peers: set[Hashable]) -> None:
        """Forget every peer not in ``peers`` (the connected ones)."""
        for peer in [p for p in self.peers if p not in peers]:
            del self.peers[peer]

    def reset(self, peer: Hashable) -> None:
        """Drop what the peer wants and what we queued for it (it stopped reading); keep
        its counters. It asks again if it still wants them."""
        ledger = self.peers.get(peer)
        if ledger is not None:
            ledger.wants.clear()
            ledger.queue.clear()
            ledger.queued_bytes = 0

    def message_received(self, peer: Hashable, message: Message) -> list[WantEntry]:
        """Apply wantlist changes; return the wants the shell must look up."""
        ledger = self.peer(peer)
        if message.full:
            ledger.wants.clear()
            ledger.queue.clear()
            ledger.queued_bytes = 0
        new = []
        for want in message.wants:
            key = bytes(want.cid)
            if want.cancel:
                ledger.wants.pop(key, None)
                task = ledger.queue.pop(key, None)
                if task is not None:
                    ledger.queued_bytes -= task.size
                continue
            old = ledger.wants.get(key)
            if old is None and len(ledger.wants) >= MAX_WANTS_PER_PEER:
                continue  # over the per-peer limit (boxo: 1024 queued wants)
            if old is not None and old.want_type is WantType.BLOCK \
                    and want.want_type is WantType.HAVE:
                # As boxo: a want-have never downgrades a want-block not yet served. Kubo
                # sends one when it gave up waiting on us (its DONT_HAVE timeout, twice its
                # recent latency) while the block was queued here: answering HAVE instead
                # cost it another round trip for the block.
                continue
            ledger.wants[key] = want
            new.append(want)
        return new

    def evaluate(self, peer: Hashable, want: WantEntry, size: int | None) -> None:
        """Decide the answer to one want given our block's size (None: we lack it)."""
        ledger = self.peers.get(peer)
        key = bytes(want.cid)
        if ledger is None or ledger.wants.get(key) is not want:
            return  # cancelled or replaced meanwhile
        if size is None:
            if want.send_dont_have:
                self._enqueue(ledger, Task(want.cid, TaskKind.DONT_HAVE, 0, want.priority))
            return  # otherwise keep waiting for the block
        if want.want_type is WantType.BLOCK or size <= INLINE_HAVE_LIMIT:
            self._enqueue(ledger, Task(want.cid, TaskKind.BLOCK, size, want.priority))
        else:
            self._enqueue(ledger, Task(want.cid, TaskKind.HAVE, 0, want.priority))

    def wanted_by(self, cid: CID) -> list[tuple[Hashable, WantEntry]]:
        """Who is waiting for this block (it just arrived in our store)."""
        key = bytes(cid)
        return [(peer, ledger.wants[key]) for peer, ledger in self.peers.items()
                if key in ledger.wants]

    def _enqueue(self, ledger: PeerLedger, task: Task) -> None:
        key = bytes(task.cid)
        old = ledger.queue.pop(key, None)
        if old is not None:
            ledger.queued_bytes -= old.size
        ledger.queue[key] = task
        ledger.queued_bytes += task.size

    def has_work(self, peer: Hashable) -> bool:
        ledger = self.peers.get(peer)
        return bool(ledger and ledger.queue)

    def upcoming_blocks(self, peer: Hashable, limit: int) -> list[CID]:
        """The blocks the next messages will carry, in ``next_batch``'s order, at most
        ``limit``: the shell starts reading them while it sends the current one."""
        ledger = self.peers.get(peer)
        if ledger is None or not ledger.queue or limit <= 0:
            return []
        ordered = sorted(ledger.queue.values(), key=lambda t: -t.priority)
        return [t.cid for t in ordered if t.kind is TaskKind.BLOCK][:limit]

    def next_batch(self, peer: Hashable, max_bytes: int) -> tuple[list[Task], int]:
        """Tasks for one message (highest priority first, at least one block if any), and
        the bytes still queued after them (the message's pendingBytes)."""
        ledger = self.peers.get(peer)
        if ledger is None or not ledger.queue:
            return [], 0
        ordered = sorted(ledger.queue.values(), key=lambda t: -t.priority)
        batch: list[Task] = []
        size = 0
        for task in ordered:
            if task.kind is TaskKind.BLOCK and batch and size + task.size > max_bytes:
                continue
            batch.append(task)
            size += task.size
        for task in batch:
            key = bytes(task.cid)
            del ledger.queue[key]
            ledger.queued_bytes -= task.size
            if task.kind is not TaskKind.DONT_HAVE:
                want = ledger.wants.get(key)
                # A served want-block, or a want-have answered, leaves the wantlist.
                if want is not None:
                    del ledger.wants[key]
        return batch, ledger.queued_bytes

    def sent(self, peer: Hashable, blocks: int, size: int) -> None:
        ledger = self.peers.get(peer)
        if ledger is not None:
            ledger.blocks_sent += blocks
            ledger.bytes_sent += size

    def received(self, peer: Hashable, blocks: int, size: int) -> None:
        ledger = self.peers.get(peer)
        if ledger is not None:
            ledger.blocks_received += blocks
            ledger.bytes_received += size


def presence_of(task: Task) -> Presence:
    return Presence.HAVE if task.kind is TaskKind.HAVE else Presence.DONT_HAVE
