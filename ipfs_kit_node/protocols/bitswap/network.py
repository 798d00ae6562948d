"""The trio shell of Bitswap: streams, timers and the store; decisions come from the ledger
(serving) and the want manager (fetching).

Streams are one-way, as Kubo and Helia use them: we read a peer's messages on the streams it
opens to us, and send ours (wants and answers alike) on one outbound stream per peer, reused,
and reopened when the peer has closed it (Helia closes idle streams after 10 s). One sender
task per peer drains that peer's queue, at most ``MAX_BATCH_BYTES`` of blocks per message
(a bigger block alone).

Hostile peers: a global limit bounds how many messages are being built (blocks read from the
store) at once, but no slot is held while writing, and every write, stream open and dial has a
timeout: a peer that stops reading costs its own sender task and one message, and when a write
does not finish within ``WRITE_TIMEOUT`` its stream is reset and its queue dropped. Incoming
messages are capped while decoded (see ``codec``), decoded off the event loop when large
(but for one block and little else: see ``_decode``), and handled in slices with a
checkpoint between them; a peer has at most ``MAX_INBOUND_STREAMS`` streams being read and
``MAX_PEER_BUFFERED`` bytes buffered across them. Its further streams
wait unread for a slot, in arrival order (at most ``MAX_WAITING_STREAMS``, each for up to
``SLOT_WAIT``; beyond, reset): Kubo before v0.37 sends every answer on a new stream, and with
the store slow to take blocks more than 16 of them are open at once; resetting those lost the
blocks they carried, and the fetch stalled ~10 s until the wants were retried. An unread
stream holds at most its Yamux window (256 KiB) in the muxer. Store errors (a full or failing
disk) are logged where they happen, in this service's own tasks: they never end it. Until
``run`` has started (the store may still be opening) wants are only recorded, as a peer lacking
the blocks would; they are answered once the store is there. The handler is guarded
(``protocols.guard``).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import trio
from libp2p.abc import IHost, INetConn, INetStream, INetwork
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from multiformats import CID
from prometheus_client import CollectorRegistry, Counter, Histogram

from ...cid import CidLike, to_cid
from ...dagwalk import Pending
from ...errors import BlockNotFoundError, BlockUnavailableError, StoreError
from ...logs import get_logger
from ...service import TaskStatus
from ..guard import set_guarded_handler
from ..notifee import ConnectionNotifee
from .codec import (
    FrameDecoder,
    Message,
    Presence,
    ProtocolViolation,
    WantEntry,
    decode,
    encode,
    rest_beside_one_block,
)
from .ledger import Ledger, TaskKind, presence_of
from .wantlist import Dropped, Out, WantManager

log = get_logger(__name__)

PROTOCOLS = [TProtocol(p) for p in ("/ipfs/bitswap/1.2.0", "/ipfs/bitswap/1.1.0",
                                    "/ipfs/bitswap/1.0.0", "/ipfs/bitswap")]
# Blocks per message: small ones packed up to this, a bigger one alone (Kubo's engine targets
# 16 KiB, so each 256 KiB block is its own message). A Kubo fetcher asks for 10 blocks at a
# time and times a peer out (a DONT_HAVE it makes up, then want-haves and a provider search)
# after twice its recent answer latency: a 1 MiB message made its first block wait for three,
# and it could use none of them (hash, store, hand on) before the last byte came. One block a
# message: Kubo<-ours 1.29x median of Kubo<-Kubo in one A/B run, against 1.01x with 1 MiB.
MAX_BATCH_BYTES = 256 * 1024
SEND_CONCURRENCY = 8
STORE_CONCURRENCY = 16  # fetched blocks held until stored (bounds memory)
READ_SIZE = 256 * 1024
TICK = 0.5
DEFAULT_TIMEOUT = 60.0
MAX_PREFETCH = 256
PROVIDER_SEARCH_DELAY = 1.0
WRITE_TIMEOUT = 20.0  # a peer that takes longer to accept one message is not reading
OPEN_TIMEOUT = 10.0  # new_stream: negotiating Bitswap on a connection we have
DIAL_TIMEOUT = 10.0  # connecting to a provider the DHT found
CLOSE_TIMEOUT = 5.0  # closing or resetting a stream
FRAME_TIMEOUT = 60.0  # a message begun must be complete within this long (>= 70 KB/s)
MAX_INBOUND_STREAMS = 16  # Bitswap streams of one peer read at once
MAX_WAITING_STREAMS = 32  # more of its streams waiting, unread, for one of those slots
SLOT_WAIT = 30.0  # how long a stream may wait for a slot before it is reset
# Inbound bytes one peer may have buffered across its streams (partial messages, and whole ones
# not yet handled): without it, 16 streams x a 4 MiB message begun = 64 MiB per peer for up to
# FRAME_TIMEOUT. One stream never holds more than ~4.3 MiB (a message and one read).
MAX_PEER_BUFFERED = 8 * 1024 * 1024
PREFETCH_IDLE = 30.0  # prefetched wants expire when their reader was idle this long
SLICE = 128  # wants (or presences) handled between two checkpoints
THREAD_DECODE_BYTES = 64 * 1024  # larger messages are decoded in a thread (see _decode)
READ_AHEAD = 8  # blocks of one message read from the store at once
SERVE_AHEAD = 4  # blocks of a peer's next messages being read from the store meanwhile

ProviderLookup = Callable[[CID], AsyncIterator[PeerInfo]]


class BitswapStore(Protocol):
    """What Bitswap needs of the block store (the node's is ``storage.TieredStore``)."""

    def add_listener(self, listener: Callable[[CID, int], None]) -> None: ...

    def local_size(self, cid: CidLike) -> int | None: ...

    def is_local(self, cid: CidLike) -> bool: ...

    def is_held(self, cid: CidLike) -> bool: ...

    def is_remote(self, cid: CidLike) -> bool: ...

    async def get(self, cid: CidLike) -> bytes: ...

    async def get_held(self, cid: CidLike, *, remote: bool = True) -> bytes | None: ...

    def read_soon(self, cid: CID) -> Pending | None: ...

    async def put(self, cid: CidLike, data: bytes, *, hashed: bool = False) -> bool: ...

    async def put_many(self, blocks: Sequence[tuple[CidLike, bytes]], *, hashed: bool = False
                       ) -> int: ...


@dataclass
class _Peer:
    # Our wants to send it, the latest entry per CID: bounded by our wantlist however long
    # the peer takes to read.
    wants: dict[bytes, WantEntry] = field(default_factory=dict)
    wake: trio.Event = field(default_factory=trio.Event)
    stream: INetStream | None = None
    protocol: str = "/ipfs/bitswap/1.2.0"
    running: bool = False
    # Reads under way of the blocks its next messages will carry (``SERVE_AHEAD`` at most).
    ahead: dict[bytes, Pending] = field(default_factory=dict)


class Bitswap(ConnectionNotifee):
    """Serves blocks from the store and fetches missing ones from peers. A node Service."""

    name = "bitswap"

    def __init__(self, host: IHost, store: Callable[[], BitswapStore],
                 registry: CollectorRegistry | None = None) -> None:
        self.host = host
        self._store = store
        self.ledger = Ledger()
        self.wants = WantManager(idle=PREFETCH_IDLE)
        self.find_providers: ProviderLookup | None = None  # the DHT plugs in here
        self._peers: dict[ID, _Peer] = {}
        self._waiters: dict[bytes, trio.Event] = {}
        self._inbound: dict[ID, int] = {}  # streams of each peer being read
        self._queued: dict[ID, deque[trio.Event]] = {}  # its streams waiting for a slot
        self._buffered: dict[ID, int] = {}  # inbound bytes each peer has us holding
        self._nursery: trio.Nursery | None = None
        self._started = False
        self._senders = trio.CapacityLimiter(SEND_CONCURRENCY)  # messages being built
        self._decoders = trio.CapacityLimiter(2)  # large messages being decoded in threads
        self._storing = trio.Semaphore(STORE_CONCURRENCY)
        self._to_store: list[tuple[ID, CID, bytes]] = []  # received, not yet being stored
        self._storer = False  # a _store_blocks task is running
        self.unsolicited = 0
        self.blocks_received = self.bytes_received = 0
        self.blocks_sent = self.bytes_sent = 0
        self._metrics(registry or CollectorRegistry())
        for protocol in PROTOCOLS:
            set_guarded_handler(host, protocol, self._handle_stream)
        host.get_network().register_notifee(self)

    def _metrics(self, registry: CollectorRegistry) -> None:
        self.m_blocks = Counter("ipfs_kit_bitswap_blocks", "Blocks", ["direction"],
                                registry=registry)
        self.m_bytes = Counter("ipfs_kit_bitswap_bytes", "Block bytes", ["direction"],
                               registry=registry)
        self.m_dups = Counter("ipfs_kit_bitswap_duplicate_blocks",
                              "Blocks received that nobody wanted (dropped)", registry=registry)
        self.m_latency = Histogram("ipfs_kit_bitswap_want_seconds",
                                   "Time from want to block", registry=registry)

    # -- service -----------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._store().add_listener(self.block_added)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for peer in self.host.get_connected_peers():
                    self._peer_joined(peer)
                self._started = True
                nursery.start_soon(self._answer_early_wants)
                nursery.start_soon(self._ticker)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._started = False
            self._nursery = None

    async def _answer_early_wants(self) -> None:
        """Wants recorded before the store was open: answer them now."""
        store = self._store()
        for n, (peer, want) in enumerate(
                [(p, w) for p, ledger in list(self.ledger.peers.items())
                 for w in list(ledger.wants.values())]):
            self.ledger.evaluate(peer, want, store.local_size(want.cid))
            self._wake(peer)  # type: ignore[arg-type]
            if n % SLICE == SLICE - 1:
                await trio.sleep(0)

    async def _ticker(self) -> None:
        while True:
            await trio.sleep(TICK)
            now = time.monotonic()
            self._sync_peers()
            self._forget(self.wants.expire(now))
            self._send(self.wants.tick(now))

    def _sync_peers(self) -> None:
        """py-libp2p runs notifees in tasks of their own, so a fetch right after a connect can
        run before ``connected`` did (and then fail fast for want of peers): reconcile."""
        connected = set(self.host.get_connected_peers())
        for peer in connected - set(self._peers):
            self._peer_joined(peer)
        for peer in set(self._peers) - connected:
            self._peer_left(peer)
        self.ledger.retain(connected)  # type: ignore[arg-type]

    # -- fetching ----------------------------------------------------------------------------

    async def get(self, cid: CidLike, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        """From the store (its remote tier included), or from peers (verified, then stored)."""
        cid = to_cid(cid)
        if bytes(cid.digest) not in self._waiters:
            # Held here, or evicted (the remote tier knows who holds it): one index lookup.
            data = await self._store().get_held(cid)
            if data is not None:
                return data
        return await self.fetch(cid, timeout)

    def read_soon(self, cid: CID) -> Pending | None:
        """A read of a local block started now (TieredStore.read_soon), or None: file walks
        keep a few under way. Blocks from peers are left to ``get`` and ``prefetch`` (they
        belong to the reading task's session)."""
        return self._store().read_soon(cid)

    async def fetch(self, cid: CidLike, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        """A local block, or one fetched from peers: never through the remote tier (which
        itself fetches through here).

        The want lives while this call waits: when it gives up (timeout) or its caller goes
        away (cancelled), the want is cancelled unless another fetch waits for it, and so are
        the unclaimed wants this reader prefetched.
        """
        cid = to_cid(cid)
        store = self._store()
        key = bytes(cid.digest)
        session = _session()
        started = time.monotonic()
        event = self._waiters.get(key)
        if event is None and store.is_local(cid):
            return await store.get(cid)
        if event is None or key in self.wants.wants:  # not arrived yet: someone must send it
            self._sync_peers()
            if not self._peers:  # nobody to ask, and no DHT lookup without a peer either
                self._forget(self.wants.abandon(session))
                raise BlockUnavailableError(
                    str(cid), "not in the local store, and no peers are connected to ask")
        if event is None:  # else a fetch (or the storing of a fetched block) is under way
            event = self._waiters[key] = trio.Event()
            log.debug("want", cid=str(cid), peers=len(self._peers))
            self._send(self.wants.want(cid, started, session))
        self.wants.claim(cid, session, started)
        found = False
        try:
            with trio.move_on_after(timeout):
                if self.find_providers is not None:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._search_providers, cid, event)
                        await event.wait()
                        nursery.cancel_scope.cancel()
                else:
                    await event.wait()
                found = True
        finally:  # also when cancelled: nothing may stay wanted for a caller that left
            self._forget(self.wants.release(cid, session, time.monotonic(), gave_up=not found))
        if not found:
            asked = len(self.wants.peers)
            raise BlockUnavailableError(
                str(cid), f"no peer sent it within {timeout:.0f} s; asked {asked} connected "
                          f"peer{'' if asked == 1 else 's'}")
        self.m_latency.observe(time.monotonic() - started)
        return await store.get(cid)

    def prefetch(self, cids: Iterable[CidLike]) -> None:
        """Ask for blocks we will read soon (DAG order), within a bounded window. They belong
        to the calling task's session: dropped if its reader fails, expired if it goes idle."""
        now = time.monotonic()
        session = _session()
        out: list[Out] = []
        store = self._store()
        for raw in cids:
            if len(self.wants.wants) >= MAX_PREFETCH:
                break
            cid = to_cid(raw)
            key = bytes(cid.digest)
            if key[:1] == b"\x00":  # identity: the CID holds the bytes; no peer is asked
                continue
            if key in self._waiters or store.is_held(cid):
                continue  # remote ones are read through the store's remote tier
            self._waiters[key] = trio.Event()
            out += self.wants.want(cid, now, session)
        self._send(out)

    def _forget(self, dropped: Dropped) -> None:
        """Wants given up: no waiter left for them; peers told to cancel."""
        for key in dropped.keys:
            event = self._waiters.pop(key, None)
            if event is not None:
                event.set()  # nobody waits (they are unclaimed), but never leave one hanging
        self._send(dropped.out)

    async def _search_providers(self, cid: CID, found: trio.Event) -> None:
        await trio.sleep(PROVIDER_SEARCH_DELAY)
        if found.is_set() or self.find_providers is None:
            return
        async for info in self.find_providers(cid):
            if info.peer_id == self.host.get_id() or info.peer_id in self._peers:
                continue
            try:
                with trio.fail_after(DIAL_TIMEOUT):
                    await self.host.connect(info)
            except Exception as exc:
                log.info("provider unreachable", peer=str(info.peer_id), error=str(exc))

    # -- inbound -----------------------------------------------------------------------------

    async def _handle_stream(self, stream: INetStream) -> None:
        peer = stream.muxed_conn.peer_id
        if self._inbound.get(peer, 0) < MAX_INBOUND_STREAMS and not self._queued.get(peer):
            self._inbound[peer] = self._inbound.get(peer, 0) + 1
        elif not await self._wait_for_slot(peer, stream):
            return
        try:
            await self._read_stream(peer, stream)
        finally:
            self._release_slot(peer)

    async def _wait_for_slot(self, peer: ID, stream: INetStream) -> bool:
        """Wait, in arrival order, for one of the peer's reading slots (handed over by
        ``_release_slot``, so ``_inbound`` never counts it twice); False if the stream was
        reset instead (too many waiting, or waited too long)."""
        queue = self._queued.setdefault(peer, deque())
        if len(queue) >= MAX_WAITING_STREAMS:
            log.info("too many bitswap streams from one peer; stream reset", peer=str(peer),
                     reading=self._inbound.get(peer, 0), waiting=len(queue))
            await _reset_quietly(stream)
            return False
        handed = trio.Event()
        queue.append(handed)
        try:
            with trio.move_on_after(SLOT_WAIT):
                await handed.wait()
        except BaseException:  # cancelled (the connection or node is going away)
            if handed.is_set():
                self._release_slot(peer)  # handed over meanwhile: pass it on
            else:
                self._leave_queue(peer, handed)
            raise
        if not handed.is_set():
            self._leave_queue(peer, handed)
            log.info("bitswap stream waited too long for a slot; stream reset",
                     peer=str(peer), waited=SLOT_WAIT)
            await _reset_quietly(stream)
            return False
        return True

    def _leave_queue(self, peer: ID, handed: trio.Event) -> None:
        queue = self._queued.get(peer)
        if queue is not None:
            queue.remove(handed)
            if not queue:
                del self._queued[peer]

    def _release_slot(self, peer: ID) -> None:
        """A stream of the peer is done: its slot goes to the first one waiting, if any."""
        queue = self._queued.get(peer)
        if queue:
            queue.popleft().set()
            if not queue:
                self._queued.pop(peer, None)
            return
        left = self._inbound.pop(peer, 1) - 1
        if left:
            self._inbound[peer] = left

    async def _read_stream(self, peer: ID, stream: INetStream) -> None:
        decoder = FrameDecoder()
        # Idle between messages is fine (Kubo keeps its stream open), but a message begun must
        # be complete within FRAME_TIMEOUT, or a peer could park 4 MiB buffers on its streams
        # by trickling bytes; and all its streams together hold at most MAX_PEER_BUFFERED.
        deadline = math.inf
        held = 0  # this stream's share of self._buffered[peer]
        reset = False
        try:
            while True:
                with trio.move_on_at(deadline) as slow:
                    try:
                        data = await stream.read(READ_SIZE)
                    except Exception:  # EOF or reset: the peer is done with this stream
                        return
                if slow.cancelled_caught:
                    log.info("bitswap message incomplete for too long; stream closed",
                             peer=str(peer), buffered=decoder.buffered)
                    return
                if not data:
                    return
                bodies = decoder.feed(data)
                held = self._hold(peer, held, decoder.buffered + sum(map(len, bodies)))
                if self._buffered.get(peer, 0) > MAX_PEER_BUFFERED:
                    # The stream whose bytes went over (the others keep their messages).
                    log.info("bitswap peer holds too many bytes across its streams; stream "
                             "reset", peer=str(peer), buffered=self._buffered.get(peer, 0),
                             limit=MAX_PEER_BUFFERED, streams=self._inbound.get(peer, 0))
                    reset = True
                    await _reset_quietly(stream)
                    return
                if not decoder.buffered:
                    deadline = math.inf
                elif bodies or deadline == math.inf:  # a new message has begun
                    deadline = trio.current_time() + FRAME_TIMEOUT
                for body in bodies:
                    message = await self._decode(body)
                    held = self._hold(peer, held, held - len(body))
                    await self._on_message(peer, message)
        except ProtocolViolation as exc:
            await self._punish(peer, str(exc))
        finally:
            self._hold(peer, held, 0)
            if not reset:
                await _close_quietly(stream)

    def _hold(self, peer: ID, old: int, new: int) -> int:
        """One stream's buffered bytes went from ``old`` to ``new``: the peer's total follows."""
        total = self._buffered.get(peer, 0) - old + new
        if total > 0:
            self._buffered[peer] = total
        else:
            self._buffered.pop(peer, None)
        return new

    async def _decode(self, body: bytes) -> Message:
        """Small messages inline; a large one in a thread, so the loop keeps running (the
        codec's caps bound its work to tens of milliseconds either way; skipping the entries
        past them costs ~9 us each, ~110 ms for 500 KiB of wants). A message of one block
        and little else is decoded inline whatever the block's size: its cost is one hash
        (~0.2 ms for 256 KiB), less than the thread hop was, and the rest of it is held to
        the same bound as a small message."""
        if rest_beside_one_block(body) < THREAD_DECODE_BYTES:
            return decode(body)
        async with self._decoders:
            return await trio.to_thread.run_sync(decode, body)

    async def _punish(self, peer: ID, reason: str) -> None:
        log.warning("bitswap peer broke the protocol; disconnecting", peer=str(peer),
                    reason=reason)
        self.ledger.forget(peer)
        try:
            with trio.fail_after(CLOSE_TIMEOUT):
                await self.host.disconnect(peer)
        except Exception as exc:
            log.info("disconnect failed", peer=str(peer), error=str(exc))

    async def _on_message(self, peer: ID, message: Message) -> None:
        if message.ignored:
            log.debug("bitswap entries ignored", peer=str(peer), ignored=message.ignored)
        if not self._started:
            # The store may not be open yet: record the wants, as a peer that lacks the
            # blocks would; _answer_early_wants answers them once we run. Blocks and
            # presences answer wants we cannot have made yet.
            self.ledger.message_received(peer, message)
            return
        store = self._store()
        # Serving: what the peer wants.
        wants = self.ledger.message_received(peer, message)
        for n, want in enumerate(wants):
            self.ledger.evaluate(peer, want, store.local_size(want.cid))
            if n % SLICE == SLICE - 1:
                self._wake(peer)
                await trio.sleep(0)
        state = self._peers.get(peer)
        if wants and state is not None:
            self._read_ahead(peer, state)  # the first blocks are read while its sender wakes
        # Fetching: blocks (already hashed to their CIDs by the codec) and presences.
        out: list[Out] = []
        for cid, data in message.blocks:
            wanted, more = self.wants.on_block(peer, cid, time.monotonic())
            out += more
            if not wanted:
                self.unsolicited += 1
                self.m_dups.inc()
                continue
            self.blocks_received += 1
            self.bytes_received += len(data)
            self.ledger.received(peer, 1, len(data))
            self.m_blocks.labels("received").inc()
            self.m_bytes.labels("received").inc(len(data))
            # Stored by another task (a put fsyncs) so this stream keeps being read.
            await self._storing.acquire()
            if self._nursery is None:  # stopping
                self._storing.release()
                return
            self._to_store.append((peer, cid, data))
            if not self._storer:
                self._storer = True
                self._nursery.start_soon(self._store_blocks)
        for n, (cid, presence) in enumerate(message.presences):
            out += self.wants.on_presence(peer, cid, presence, time.monotonic())
            if n % SLICE == SLICE - 1:
                await trio.sleep(0)
        self._send(out)
        if wants:
            # Only new wants give this peer's sender work. Kubo sends a cancel for every
            # block it receives, each its own message: waking the sender for those was a
            # task switch per block for nothing.
            self._wake(peer)

    async def _store_blocks(self) -> None:
        """Stores the blocks received, all those that came in while the last batch was
        being written in one ``put_many`` (one trip to the store's thread, one fsync, one
        index transaction): a put per block was a thread hop per block, and with Kubo's
        one-block messages the fetch's largest cost after the store's own work.

        Runs in Bitswap's own nursery, outside any stream handler's guard: whatever the
        store raises (a full disk, EIO, EROFS, EMFILE) is logged here, never passed up, or it
        would end Bitswap and the node. The waiting fetches wake and find no block."""
        try:
            while self._to_store:
                batch, self._to_store = self._to_store, []
                try:
                    # The codec computed each cid from its bytes: no second hash.
                    # block_added runs from the store's listener.
                    await self._store().put_many([(cid, data) for _, cid, data in batch],
                                                 hashed=True)
                except Exception as exc:
                    log.error("could not store fetched blocks", blocks=len(batch),
                              peers=sorted({str(p) for p, _, _ in batch}),
                              cid=str(batch[0][1]), error=str(exc),
                              error_type=type(exc).__name__)
                finally:
                    for _, cid, _ in batch:
                        self._storing.release()
                        event = self._waiters.pop(bytes(cid.digest), None)
                        if event is not None:
                            event.set()
        finally:
            self._storer = False

    def block_added(self, cid: CID, size: int) -> None:
        """A block entered the store: serve the peers that were waiting for it."""
        for peer, want in self.ledger.wanted_by(cid):
            self.ledger.evaluate(peer, want, size)
            self._wake(peer)  # type: ignore[arg-type]

    # -- outbound ----------------------------------------------------------------------------

    def _send(self, out: list[Out]) -> None:
        for peer, entry in out:
            state = self._peers.get(peer)  # type: ignore[call-overload]
            if state is not None:
                state.wants[bytes(entry.cid)] = entry  # a later entry supersedes an earlier
                self._wake(peer)  # type: ignore[arg-type]

    def _wake(self, peer: ID) -> None:
        state = self._peers.get(peer)
        if state is None:
            return
        state.wake.set()
        if not state.running and self._nursery is not None:
            state.running = True
            self._nursery.start_soon(self._sender, peer, state)

    async def _sender(self, peer: ID, state: _Peer) -> None:
        """Drains one peer's queue. Messages are built under the global limit (reading
        blocks), written outside it: a peer that does not read holds only this task.

        The edge of this peer's sending: it runs in Bitswap's nursery, so an unexpected error
        ends this sender (its queue dropped; the next wake starts another), never Bitswap."""
        try:
            while self._peers.get(peer) is state:
                await state.wake.wait()
                state.wake = trio.Event()
                ready: Message | None = None
                while ready is not None or state.wants or self.ledger.has_work(peer):
                    if ready is None:
                        async with self._senders:
                            ready = await self._build(peer, state)
                        continue
                    ready = await self._write_and_build(peer, state, ready)
                    if ready is _FAILED:
                        return
        except Exception as exc:
            log.error("bitswap sender failed; its queue dropped", peer=str(peer),
                      error=str(exc), error_type=type(exc).__name__)
            self.ledger.reset(peer)  # it asks again if it still wants them
        finally:
            state.running = False
            state.ahead.clear()
            await _close_quietly(state.stream)
            state.stream = None

    async def _write_and_build(self, peer: ID, state: _Peer, message: Message
                               ) -> Message | None:
        """Write one message while the next is built (its blocks read), so the stream is
        not idle between messages: the next message, None, or ``_FAILED`` if the write
        failed (its queue dropped). At most two messages per peer are held."""
        written = True

        async def write() -> None:
            nonlocal written
            written = await self._write(peer, state, message)

        following: Message | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(write)
            if state.wants or self.ledger.has_work(peer):
                async with self._senders:
                    following = await self._build(peer, state)
        return following if written else _FAILED

    async def _build(self, peer: ID, state: _Peer) -> Message | None:
        """One message for the peer, read from the local tiers only (memory, disk): a block
        evicted to the remote tier, collected, or unreadable (an I/O error) is answered as one
        we lack (DONT_HAVE if the peer asked for that), never fetched while holding a slot."""
        wants, state.wants = tuple(state.wants.values()), {}
        peer_ledger = self.ledger.peers.get(peer)
        asked = dict(peer_ledger.wants) if peer_ledger is not None else {}  # before serving
        tasks, pending = self.ledger.next_batch(peer, MAX_BATCH_BYTES)
        cids = [t.cid for t in tasks if t.kind is TaskKind.BLOCK]
        started = [(cid, state.ahead.pop(bytes(cid), None)) for cid in cids]
        self._read_ahead(peer, state)
        found = await self._read_blocks(peer, started)
        blocks = []
        presences = []
        for task in tasks:
            if task.kind is TaskKind.BLOCK:
                data = found.get(bytes(task.cid))
                if data is not None:
                    blocks.append((task.cid, data))
                    continue
                want = asked.get(bytes(task.cid))
                if want is not None and want.send_dont_have:
                    presences.append((task.cid, Presence.DONT_HAVE))
            else:
                presences.append((task.cid, presence_of(task)))
        message = Message(wants=wants, blocks=tuple(blocks), presences=tuple(presences),
                          pending_bytes=pending)
        return None if message.empty else message

    def _read_ahead(self, peer: ID, state: _Peer) -> None:
        """Start reading the blocks of the peer's next messages (``store.read_soon``: the
        disk read and hash check on a worker thread), so that each is in hand when its
        message is built. Kubo asks 10 blocks at a time and asks for the next 10 only once
        it has them all; read one by one between writes, a quarter to half of that time was
        our wait for the read. Reads of blocks no longer queued (cancelled) are let go."""
        upcoming = {bytes(c): c for c in self.ledger.upcoming_blocks(peer, SERVE_AHEAD)}
        for key in [k for k in state.ahead if k not in upcoming]:
            del state.ahead[key]  # a read let go ends on its own (the store settles it)
        store = self._store()
        for key, cid in upcoming.items():
            if key not in state.ahead and not store.is_remote(cid):
                read = store.read_soon(cid)
                if read is None:
                    break  # not local, or the store's readers are busy: read when built
                state.ahead[key] = read

    async def _read_blocks(self, peer: ID, cids: list[tuple[CID, Pending | None]]
                           ) -> dict[bytes, bytes]:
        """The blocks of one message that we hold locally, read at once (disk reads run in
        the store's threads): a batch of four 256 KiB blocks read one after the other was a
        third of the time it took to serve Kubo. Those missing or unreadable are left out.
        Each comes with the read already under way for it (``_read_ahead``), if any."""
        store = self._store()
        found: dict[bytes, bytes] = {}

        async def read(cid: CID, started: Pending | None) -> None:
            try:
                if started is not None:
                    found[bytes(cid)] = await started.result()
                elif not store.is_remote(cid):
                    found[bytes(cid)] = await store.get(cid)
            except BlockNotFoundError:
                pass  # collected meanwhile
            except (StoreError, OSError) as exc:
                log.error("could not read a block to serve; answered as missing",
                          peer=str(peer), cid=str(cid), error=str(exc),
                          error_type=type(exc).__name__)

        if len(cids) == 1:
            await read(*cids[0])
        elif cids:
            async with trio.open_nursery() as nursery:
                for cid, started in cids[:READ_AHEAD]:
                    nursery.start_soon(read, cid, started)
            for cid, started in cids[READ_AHEAD:]:  # many small blocks: mostly memory hits
                await read(cid, started)
        return found

    async def _write(self, peer: ID, state: _Peer, message: Message) -> bool:
        for attempt in (1, 2):
            try:
                if state.stream is None:
                    with trio.fail_after(OPEN_TIMEOUT):
                        state.stream = await self.host.new_stream(peer, PROTOCOLS)
                    state.protocol = str(state.stream.get_protocol() or PROTOCOLS[0])
                with trio.fail_after(WRITE_TIMEOUT):
                    await state.stream.write(encode(message, state.protocol))
                size = sum(len(d) for _, d in message.blocks)
                self.blocks_sent += len(message.blocks)
                self.bytes_sent += size
                self.ledger.sent(peer, len(message.blocks), size)
                if message.blocks:
                    self.m_blocks.labels("sent").inc(len(message.blocks))
                    self.m_bytes.labels("sent").inc(size)
                return True
            except trio.TooSlowError:
                # Not reading (or not answering): it gets nothing more until it asks again.
                log.warning("bitswap peer too slow; stream reset and its queue dropped",
                            peer=str(peer), opening=state.stream is None,
                            timeout=WRITE_TIMEOUT if state.stream else OPEN_TIMEOUT)
                await _reset_quietly(state.stream)
                state.stream = None
                self.ledger.reset(peer)
                return False
            except Exception as exc:  # closed by the peer (idle timeout) or gone
                await _close_quietly(state.stream)
                state.stream = None
                if attempt == 2 or not self.host.get_network().get_connections(peer):
                    log.info("bitswap send failed; its queue dropped", peer=str(peer),
                             error=str(exc))
                    self.ledger.reset(peer)  # it asks again if it still wants them
                    return False
        return False

    # -- peers -------------------------------------------------------------------------------

    def _peer_joined(self, peer: ID) -> None:
        if peer not in self._peers:
            log.debug("bitswap peer joined", peer=str(peer))
            self._peers[peer] = _Peer()
            self._send(self.wants.add_peer(peer, time.monotonic()))

    def _peer_left(self, peer: ID) -> None:
        state = self._peers.pop(peer, None)
        if state is not None:
            state.wake.set()
        self.ledger.forget(peer)
        self._send(self.wants.remove_peer(peer, time.monotonic()))

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        self._peer_joined(conn.muxed_conn.peer_id)

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        peer = conn.muxed_conn.peer_id
        if not network.get_connections(peer):
            self._peer_left(peer)

    # -- for the connection manager ---------------------------------------------------------

    def session_peers(self) -> set[ID]:
        """Peers we are fetching from now (want-blocks or want-haves outstanding)."""
        out: set[ID] = set()
        for want in self.wants.wants.values():
            out.update(want.asked)  # type: ignore[arg-type]
            out.update(want.discovery)  # type: ignore[arg-type]
        return out & set(self._peers)

    def exchanged(self) -> dict[ID, tuple[int, int]]:
        return {p: (ledger.blocks_received, ledger.blocks_sent)  # type: ignore[misc]
                for p, ledger in self.ledger.peers.items()}

    # -- stats -------------------------------------------------------------------------------

    def stat(self) -> dict[str, object]:
        """Shaped like Kubo's `ipfs bitswap stat`."""
        return {
            "Wantlist": [str(to_cid(w.cid)) for w in self.wants.wants.values()],
            "Peers": sorted(str(p) for p in self._peers),
            "BlocksReceived": self.blocks_received, "DataReceived": self.bytes_received,
            "BlocksSent": self.blocks_sent, "DataSent": self.bytes_sent,
            "DupBlksReceived": self.wants.duplicates, "Unsolicited": self.unsolicited,
            "Ledgers": {str(p): {"BlocksReceived": ledger.blocks_received,
                                 "BlocksSent": ledger.blocks_sent,
                                 "Wants": len(ledger.wants)}
                        for p, ledger in self.ledger.peers.items()},
        }


_FAILED = Message(full=True)  # _write_and_build: the write failed (a sentinel, never sent)


def _session() -> object:
    """The reader a fetch or prefetch belongs to: the trio task making it (the exporter's
    reads and prefetches of one cat, pin or task input run in one task)."""
    return trio.lowlevel.current_task()


async def _close_quietly(stream: INetStream | None) -> None:
    if stream is not None:
        with trio.move_on_after(CLOSE_TIMEOUT), contextlib.suppress(Exception):
            await stream.close()


async def _reset_quietly(stream: INetStream | None) -> None:
    if stream is not None:
        with trio.move_on_after(CLOSE_TIMEOUT), contextlib.suppress(Exception):
            await stream.reset()
