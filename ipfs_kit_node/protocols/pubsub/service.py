"""gossipsub, set up the way the task mesh needs it.

py-libp2p's defaults are wrong for us (reference notes): a 120 s heartbeat, spam protection
that drops all but 10 messages/s per peer and topic, and no protocol list. Messages are
signed and verified (strict). Pubsub only attaches to connections opened after it started, so
the node starts this service before anything dials (bootstrap, mDNS, the API).
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import multiaddr
import trio
from google.protobuf.message import DecodeError
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service

from ...logs import get_logger
from ...service import TaskStatus

log = get_logger(__name__)

# The topics named in the hello packet the current task just built (one task registers one
# peer at a time, so a context variable pairs each hello with its peer).
_hello_topics: contextvars.ContextVar[set[str] | None] = contextvars.ContextVar(
    "_hello_topics", default=None)


class _Pubsub(Pubsub):
    """py-libp2p 0.8.1's Pubsub with three fixes we measured a need for.

    - Writes to a peer's stream come from several tasks (publish, forward, gossip) with no
      lock; Yamux splits a large RPC into frames and yields between them, so two writers
      interleave and the peer reads garbage. One lock per stream serialises them.
    - A malformed RPC from a peer raised protobuf's DecodeError out of the stream handler and
      took down the whole swarm (the node exited). Now the stream is reset, the peer dropped
      from pubsub, and the node keeps running.
    - A subscription made while a new peer was being registered never reached that peer: its
      hello packet was built before the subscription, and the announcement went to
      ``self.peers``, which it joins only after the hello is written. That peer then never
      listed us on the topic (seen in CI: a leecher missing from the master's topic peers).
      Once the peer is registered, whatever changed since its hello is announced to it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._write_locks: weakref.WeakKeyDictionary[INetStream, trio.Lock] = \
            weakref.WeakKeyDictionary()

    async def write_msg(self, stream: INetStream, rpc_msg: rpc_pb2.RPC) -> bool:
        lock = self._write_locks.setdefault(stream, trio.Lock())
        async with lock:
            return bool(await super().write_msg(stream, rpc_msg))

    def get_hello_packet(self) -> rpc_pb2.RPC:
        packet = super().get_hello_packet()
        sent = _hello_topics.get()
        if sent is not None:
            sent.update(sub.topicid for sub in packet.subscriptions if sub.subscribe)
        return packet

    async def _handle_new_peer(self, peer_id: ID) -> None:
        already = peer_id in self.peers
        sent: set[str] = set()
        token = _hello_topics.set(sent)
        try:
            await super()._handle_new_peer(peer_id)
        finally:
            _hello_topics.reset(token)
        queue = self.peer_queues.get(peer_id)
        if already or queue is None:
            return
        now = set(self.topic_ids)
        if now == sent:
            return
        subs = [rpc_pb2.RPC.SubOpts(subscribe=topic in now, topicid=topic)
                for topic in sorted(now ^ sent)]
        if not queue.push(rpc_pb2.RPC(subscriptions=subs)):
            for sub in subs:  # a full queue: the library's own announce retry takes over
                self._schedule_announce_retry(peer_id, sub)

    async def continuously_read_stream(self, stream: INetStream) -> None:
        try:
            await super().continuously_read_stream(stream)
        except Exception as exc:  # DecodeError, or anything else a peer's RPC sets off
            peer = stream.muxed_conn.peer_id
            kind = "malformed" if isinstance(exc, DecodeError) else "failed"
            log.warning(f"{kind} pubsub RPC; stream reset", peer=str(peer),
                        error=f"{type(exc).__name__}: {exc}"[:300])
            with contextlib.suppress(Exception):
                await stream.reset()
            self._handle_dead_peer(peer)


ADDRS_TTL = 5.0  # seconds pubsub reuses our address list (see _PubsubHost)


class _PubsubHost:
    """The host as pubsub sees it: our addresses read at most every ``ADDRS_TTL`` seconds.

    py-libp2p 0.8.1 puts our signed peer record in every pubsub RPC, and to check that the
    record is current it rebuilds our address list each time (a multiaddr per listening
    socket, parsed from a string): a fifth of the master's idle CPU. Everything else is
    the host's own."""

    def __init__(self, host: IHost) -> None:
        self._host = host
        self._addrs: tuple[float, list[multiaddr.Multiaddr]] = (-math.inf, [])

    def get_addrs(self) -> list[multiaddr.Multiaddr]:
        now = time.monotonic()
        if now - self._addrs[0] > ADDRS_TTL:
            self._addrs = (now, self._host.get_addrs())
        return list(self._addrs[1])

    def __getattr__(self, name: str) -> Any:
        return getattr(self._host, name)


# Whether the message GossipSub.publish is forwarding now is worth an IDONTWANT (see below).
_idontwant_worth: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "_idontwant_worth", default=True)
# go-libp2p-pubsub's GossipSubIDontWantMessageThreshold: smaller messages cost less to
# receive twice than the IDONTWANT that would spare it.
IDONTWANT_THRESHOLD = 1024


class _GossipSub(GossipSub):
    """py-libp2p 0.8.1's GossipSub, sending IDONTWANT as go-libp2p does.

    py-libp2p sends an IDONTWANT to every mesh peer for every message it forwards, its own
    included and however small; each is an RPC carrying our signed peer record, which the
    peer verifies twice (reader and router): in a three-node task mesh that was most of the
    CPU a heartbeat or a results batch cost. go-libp2p sends it only for a message it
    received (a peer never sends our own messages back to us) of at least
    ``IDONTWANT_THRESHOLD`` bytes.
    """

    async def publish(self, msg_forwarder: ID, pubsub_msg: rpc_pb2.Message) -> None:
        worth = len(pubsub_msg.data) >= IDONTWANT_THRESHOLD and (
            self.pubsub is None or msg_forwarder != self.pubsub.my_id)
        token = _idontwant_worth.set(worth)
        try:
            await super().publish(msg_forwarder, pubsub_msg)
        finally:
            _idontwant_worth.reset(token)

    async def _emit_idontwant_for_message(self, msg_id: bytes, topic_ids: Iterable[str]
                                          ) -> None:
        if _idontwant_worth.get():
            await super()._emit_idontwant_for_message(msg_id, topic_ids)


PROTOCOLS = [TProtocol(p) for p in ("/meshsub/1.2.0", "/meshsub/1.1.0", "/meshsub/1.0.0")]
HEARTBEAT = 1
MAX_MESSAGE_BYTES = 1024 * 1024
# Messages (and their bytes: a message may be 1 MiB) waiting for one local subscriber; past
# either, that subscriber misses messages (and a warning says so) rather than slowing the
# others or filling memory.
SUBSCRIBER_BUFFER = 4096
SUBSCRIBER_BYTES = 16 * 1024 * 1024


@dataclass
class _Backlog:
    """Bytes handed to one subscriber and not yet taken by it."""

    bytes: int = 0


@dataclass
class _Topic:
    """Our local subscribers of one topic, fed by one pump from py-libp2p's subscription."""

    subscribers: dict[trio.MemorySendChannel[PubsubMessage], _Backlog] = field(
        default_factory=dict)
    pump: trio.CancelScope = field(default_factory=trio.CancelScope)
    dropped: int = 0


@dataclass(frozen=True)
class PubsubMessage:
    topic: str
    data: bytes
    sender: ID  # the signer (strict signing: verified by py-libp2p before delivery)
    seqno: bytes


class PubsubService:
    name = "pubsub"

    def __init__(self, host: IHost) -> None:
        self.host = host
        self.router = _GossipSub(
            protocols=PROTOCOLS, degree=6, degree_low=4, degree_high=12,
            heartbeat_interval=HEARTBEAT, spam_protection_enabled=False,
        )
        self.pubsub = _Pubsub(cast(IHost, _PubsubHost(host)), self.router,
                             strict_signing=True, max_inbound_rpc_size=MAX_MESSAGE_BYTES)
        self._ready = trio.Event()
        self._topics: dict[str, _Topic] = {}
        self._lock = trio.Lock()  # py-libp2p subscribe/unsubscribe, one at a time
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with background_trio_service(self.pubsub), \
                background_trio_service(self.router), trio.open_nursery() as nursery:
            await self.pubsub.wait_until_ready()
            self._nursery = nursery
            self._ready.set()
            task_status.started()
            await trio.sleep_forever()

    async def publish(self, topic: str, data: bytes) -> None:
        await self._ready.wait()
        await self.pubsub.publish(topic, data)

    async def subscribe(self, topic: str, on_subscribed: Callable[[], None] | None = None
                        ) -> AsyncIterator[PubsubMessage]:
        """Messages on ``topic`` (our own included) until the caller stops iterating.

        py-libp2p keeps one queue per topic: two readers of it would each get half the
        messages, and one leaving would close it under the other. So one pump per topic reads
        it and fans each message out to every local subscriber; the last one to leave
        unsubscribes. ``on_subscribed`` runs once this subscriber gets every message from
        then on (the first iteration registers it), before waiting for one.
        """
        await self._ready.wait()
        send, receive = trio.open_memory_channel[PubsubMessage](SUBSCRIBER_BUFFER)
        async with self._lock:
            entry = self._topics.get(topic)
            if entry is None:
                subscription = await self.pubsub.subscribe(topic)
                entry = self._topics[topic] = _Topic()
                assert self._nursery is not None
                self._nursery.start_soon(self._pump, topic, entry, subscription)
            backlog = entry.subscribers[send] = _Backlog()
        try:
            if on_subscribed is not None:
                on_subscribed()
            async with receive:
                async for message in receive:
                    backlog.bytes -= len(message.data)
                    yield message
        finally:
            entry.subscribers.pop(send, None)
            send.close()
            if not entry.subscribers and self._topics.get(topic) is entry:
                del self._topics[topic]
                entry.pump.cancel()  # the pump unsubscribes on its way out

    async def _pump(self, topic: str, entry: _Topic, subscription: Any) -> None:
        try:
            with entry.pump:
                while True:
                    message = await subscription.get()
                    try:
                        sender = ID(message.from_id)
                    except Exception:
                        log.info("pubsub message without a valid sender dropped", topic=topic)
                        continue
                    item = PubsubMessage(topic, bytes(message.data), sender,
                                         bytes(message.seqno))
                    for send, backlog in list(entry.subscribers.items()):
                        try:
                            if backlog.bytes + len(item.data) > SUBSCRIBER_BYTES:
                                raise trio.WouldBlock
                            send.send_nowait(item)
                            backlog.bytes += len(item.data)
                        except trio.WouldBlock:
                            entry.dropped += 1
                            if entry.dropped in (1, 10) or entry.dropped % 1000 == 0:
                                log.warning("pubsub subscriber too slow; messages dropped",
                                            topic=topic, dropped=entry.dropped)
                        except (trio.BrokenResourceError, trio.ClosedResourceError):
                            entry.subscribers.pop(send, None)
        except Exception as exc:  # the subscription broke: end every local subscriber's feed
            log.warning("pubsub subscription ended", topic=topic, error=str(exc))
        finally:
            for send in list(entry.subscribers):
                send.close()
            if self._topics.get(topic) is entry:
                del self._topics[topic]
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                async with self._lock:
                    if topic not in self._topics:  # nobody subscribed again meanwhile
                        await self.pubsub.unsubscribe(topic)

    def topic_peers(self, topic: str) -> list[ID]:
        return list(self.pubsub.peer_topics.get(topic, ()))
