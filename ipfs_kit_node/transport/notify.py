"""Stream-open and stream-close notifications without a task per notifee that does nothing.

py-libp2p 0.8.1's swarm tells every notifee of every stream opened and closed, each call in a
task of its own under a new nursery. Our node has six notifees (ours, the library's tag
store, identify and pubsub) and none acts on streams, yet Kubo opens a stream for each
Bitswap message it sends: a 64 MiB fetch from Kubo spawned ~3,000 tasks that only returned
(~3 per 256 KiB block, a few percent of the fetch's CPU). Here a stream event skips notifees
whose handler for it is one of those known no-ops; any other notifee (a test's, a future
one) is called as the library calls it. Importing this module installs it (as ``yamux``
points the library's names at our classes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from libp2p.host.basic_host import _IdentifyNotifee
from libp2p.network.swarm import Swarm
from libp2p.network.tag_store import TagStoreNotifee
from libp2p.pubsub.pubsub_notifee import PubsubNotifee

from ..protocols.notifee import ConnectionNotifee

STREAM_EVENTS = ("opened_stream", "closed_stream")

NO_OPS: frozenset[Callable[..., Any]] = frozenset(
    getattr(cls, event)
    for cls in (ConnectionNotifee, TagStoreNotifee, _IdentifyNotifee, PubsubNotifee)
    for event in STREAM_EVENTS
)

_library_notify = Swarm._notify


async def _notify(self: Swarm, method: str, *args: Any) -> None:
    if method in STREAM_EVENTS and all(getattr(type(n), method, None) in NO_OPS
                                       for n in self.notifees):
        return
    await _library_notify(self, method, *args)


Swarm._notify = _notify  # type: ignore[method-assign]
