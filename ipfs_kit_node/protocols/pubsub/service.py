"""gossipsub, set up the way the task mesh needs it.

py-libp2p's defaults are wrong for us (reference notes): a 120 s heartbeat, spam protection
that drops all but 10 messages/s per peer and topic, and no protocol list. Messages are
signed and verified (strict). Pubsub only attaches to connections opened after it started, so
the node starts this service before anything dials (bootstrap, mDNS, the API).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import trio
from libp2p.abc import IHost
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service

from ...logs import get_logger
from ...service import TaskStatus

log = get_logger(__name__)

PROTOCOLS = [TProtocol(p) for p in ("/meshsub/1.2.0", "/meshsub/1.1.0", "/meshsub/1.0.0")]
HEARTBEAT = 1
MAX_MESSAGE_BYTES = 1024 * 1024


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
        self.router = GossipSub(
            protocols=PROTOCOLS, degree=6, degree_low=4, degree_high=12,
            heartbeat_interval=HEARTBEAT, spam_protection_enabled=False,
        )
        self.pubsub = Pubsub(host, self.router, strict_signing=True,
                             max_inbound_rpc_size=MAX_MESSAGE_BYTES)
        self._ready = trio.Event()

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with background_trio_service(self.pubsub), \
                background_trio_service(self.router):
            await self.pubsub.wait_until_ready()
            self._ready.set()
            task_status.started()
            await trio.sleep_forever()

    async def publish(self, topic: str, data: bytes) -> None:
        await self._ready.wait()
        await self.pubsub.publish(topic, data)

    async def subscribe(self, topic: str) -> AsyncIterator[PubsubMessage]:
        """Messages on ``topic`` (our own included) until the caller stops iterating."""
        await self._ready.wait()
        subscription = await self.pubsub.subscribe(topic)
        try:
            while True:
                message = await subscription.get()
                try:
                    sender = ID(message.from_id)
                except Exception:
                    log.info("pubsub message without a valid sender dropped", topic=topic)
                    continue
                yield PubsubMessage(topic, bytes(message.data), sender, bytes(message.seqno))
        finally:
            await self.pubsub.unsubscribe(topic)

    def topic_peers(self, topic: str) -> list[ID]:
        return list(self.pubsub.peer_topics.get(topic, ()))
