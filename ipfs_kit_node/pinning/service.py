"""Pinning as a node service: the configured Kubo and Cluster, the durable queue, the store's
remote tier. Its HTTP routes (`pin … --remote`, `pin remote ls`, `pin status`) live in
api/routes/pins.py."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from ..config import NodeConfig
from ..errors import IpfsKitError, PinningError
from ..logs import get_logger
from ..protocols.bitswap import Bitswap
from ..service import TaskStatus
from ..storage.store import TieredStore
from .queue import Intent, PinQueue, Target
from .remote import PinnedElsewhere

if TYPE_CHECKING:
    from .targets import ClusterTarget, KuboTarget

log = get_logger(__name__)


class PinningService:
    name = "pinning"

    def __init__(self, config: NodeConfig, repo: Path,
                 store: Callable[[], TieredStore], fetcher: Bitswap,
                 origins: Callable[[], list[str]],
                 dial: Callable[[str], Any]) -> None:
        cfg = config.pinning
        self._store = store
        self.targets: dict[str, KuboTarget | ClusterTarget] = {}
        if cfg.kubo_api or cfg.cluster_api:
            # httpx loads only when a service is configured (the daemon's RSS budget).
            from .base import load_credentials
            from .cluster import ClusterClient
            from .kubo import KuboClient
            from .targets import ClusterTarget, KuboTarget
        if cfg.kubo_api:
            self.targets["kubo"] = KuboTarget(KuboClient(
                cfg.kubo_api, credentials=load_credentials(
                    cfg.kubo_credentials, "[pinning] kubo_credentials"),
                timeout=cfg.timeout), origins)
        if cfg.cluster_api:
            self.targets["cluster"] = ClusterTarget(
                ClusterClient(cfg.cluster_api, credentials=load_credentials(
                    cfg.cluster_credentials, "[pinning] cluster_credentials"),
                    timeout=cfg.timeout), origins,
                replication_min=cfg.replication_min, replication_max=cfg.replication_max)
        queue_targets: dict[str, Target] = dict(self.targets)
        self.queue = PinQueue(repo / "pinning" / "queue", queue_targets,
                              sync=config.storage.sync, max_backoff=cfg.max_backoff,
                              max_attempts=cfg.max_attempts)
        self.remote: PinnedElsewhere | None = None
        if self.targets and cfg.remote_tier:
            self.remote = PinnedElsewhere(dict(self.targets), store, fetcher, dial)
            self.queue.listeners.append(self._follow)
            self.queue.before_unpin = self._bring_home

    @property
    def configured(self) -> list[str]:
        return sorted(self.targets)

    def _follow(self, intent: Intent) -> None:
        assert self.remote is not None
        if intent.action == "pin":
            self.remote.held(intent.cid, intent.target)
        else:
            self.remote.released(intent.cid, intent.target)

    async def _bring_home(self, intent: Intent) -> None:
        """Before the remote lets go of a DAG, take back what we evicted of it."""
        assert self.remote is not None
        if intent.cid not in self.remote.roots or intent.cid not in self._store().pins():
            return  # nothing evicted, or we no longer want the data ourselves
        self.remote.released(intent.cid, intent.target)  # GC must not evict it meanwhile
        try:
            count = await self.remote.restore(intent.cid)
        except IpfsKitError as exc:
            self.remote.held(intent.cid, intent.target)
            raise PinningError(f"cannot unpin {intent.cid} yet: its evicted blocks did not "
                               f"come back ({exc})") from None
        log.info("evicted blocks restored before unpinning", cid=intent.cid, blocks=count)

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(self.queue.run)
            if self.remote is not None:
                latest: dict[tuple[str, str], Intent] = {}
                for intent in sorted(self.queue.intents.values(), key=lambda i: i.at):
                    if intent.state == "done":
                        latest[(intent.cid, intent.target)] = intent
                for intent in latest.values():
                    self._follow(intent)
                nursery.start_soon(self.remote.run)
            if self.targets:
                log.info("pinning ready", targets=self.configured)
            task_status.started()

    async def pin(self, cid: str, target: str, name: str = "") -> Intent:
        return await self.queue.enqueue("pin", cid, target, name)

    async def kubo_pins(self) -> AsyncIterator[bytes]:
        client: Any = self.targets["kubo"].client
        async for cid, kind in client.pin_ls():
            yield json.dumps({"Cid": cid, "Type": kind}).encode() + b"\n"

    async def cluster_pins(self) -> AsyncIterator[bytes]:
        client: Any = self.targets["cluster"].client
        async for info in client.pins():
            statuses = sorted({p.status for p in info.peer_map.values()})
            yield json.dumps({"Cid": info.cid, "Name": info.name, "Status": statuses,
                              "PinnedOn": info.pinned_on()}).encode() + b"\n"
