"""The durable pin queue: a pin or unpin intent is fsynced before it is acknowledged, then
applied to Kubo or Cluster, with exponential backoff and jitter while they are unreachable.

Records (``<repo>/pinning/queue``, a RecordLog)::

    {"op": "intent", "id", "action": "pin" | "unpin", "cid", "target", "name", "at"}
    {"op": "state", "id", "state": "done" | "failed" | "superseded", "attempts", "error", "at"}

Enqueueing what is already queued returns the queued intent (idempotent); a newer opposite
intent supersedes the older. Pinning is idempotent on both services, so an intent applied
just before a crash and applied again after it still leaves one pin.
"""

from __future__ import annotations

import random
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import trio

from ..errors import PinningError, RemoteUnavailableError
from ..journal import RecordLog
from ..logs import get_logger
from ..service import TaskStatus

log = get_logger(__name__)

BASE_DELAY = 1.0
KEEP_FINISHED = 10_000
CONCURRENCY = 16  # pins in flight at once (IPFS Cluster operators run 8-20)


class Target(Protocol):
    """A service that holds pins for us (pinning/targets.py)."""

    name: str

    async def pin(self, cid: str, name: str) -> None: ...

    async def unpin(self, cid: str) -> None: ...


@dataclass
class Intent:
    id: str
    action: str  # "pin" | "unpin"
    cid: str
    target: str  # "kubo" | "cluster"
    name: str = ""
    at: float = 0.0
    state: str = "queued"  # queued | done | failed | superseded
    attempts: int = 0
    error: str = ""
    updated: float = 0.0
    next_at: float = 0.0  # not persisted: after a restart everything is due at once

    def as_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.pop("next_at")
        doc["retry_in"] = round(max(0.0, self.next_at - time.time()), 1) \
            if self.state == "queued" else None
        return doc


def backoff(attempts: int, max_delay: float, rng: Callable[[], float] = random.random) -> float:
    """1 s, 2 s, 4 s... capped at ``max_delay``, each times 0.5 to 1.5 so retries spread."""
    delay: float = min(max_delay, BASE_DELAY * 2.0 ** max(0, attempts - 1))
    return delay * (0.5 + rng())


class PinQueue:
    name = "pin-queue"

    def __init__(self, path: Path, targets: dict[str, Target], *, sync: bool = True,
                 max_backoff: float = 300.0, max_attempts: int = 10) -> None:
        self.targets = targets
        self.max_backoff = max_backoff
        # An unreachable service is waited for forever; other errors get this many tries.
        self.max_attempts = max_attempts
        self._log = RecordLog(path, sync=sync)
        self.intents: dict[str, Intent] = {}
        self._wake = trio.Event()
        self._lock = trio.Lock()
        self.listeners: list[Callable[[Intent], None]] = []  # called when one is done
        self._finished: deque[str] = deque()
        # Runs before an unpin is applied (the remote tier brings evicted blocks home).
        self.before_unpin: Callable[[Intent], Awaitable[None]] | None = None

    # -- durability --------------------------------------------------------------------------

    def open(self) -> None:
        """Replay and compact. Blocking: call it in a thread."""
        for doc in self._log.replay():
            if not isinstance(doc, dict):
                continue
            if doc.get("op") == "intent":
                fields = {k: doc[k] for k in ("id", "action", "cid", "target", "name", "at")
                          if k in doc}
                try:
                    self.intents[fields["id"]] = Intent(**fields, updated=fields.get("at", 0.0))
                except (KeyError, TypeError):
                    log.warning("pin queue record skipped", record=str(doc)[:200])
            elif doc.get("op") == "state" and doc.get("id") in self.intents:
                intent = self.intents[doc["id"]]
                intent.state = str(doc.get("state", intent.state))
                intent.attempts = int(doc.get("attempts", intent.attempts))
                intent.error = str(doc.get("error", ""))
                intent.updated = float(doc.get("at", intent.updated))
        finished = sorted((i for i in self.intents.values()
                           if i.state != "queued" and not _holds(i)), key=lambda i: i.updated)
        for old in finished[:max(0, len(finished) - KEEP_FINISHED)]:
            del self.intents[old.id]
        self._finished = deque(i.id for i in finished[-KEEP_FINISHED:])
        docs: list[dict[str, Any]] = []
        for i in sorted(self.intents.values(), key=lambda i: i.at):
            docs.append(_intent_doc(i))
            if i.state != "queued" or i.attempts:
                docs.append(_state_doc(i))
        self._log.rewrite(docs)

    def close(self) -> None:
        self._log.close()

    async def _durable(self, docs: list[dict[str, Any]]) -> None:
        async with self._lock:
            await trio.to_thread.run_sync(self._log.append, docs)

    # -- the queue ---------------------------------------------------------------------------

    async def enqueue(self, action: str, cid: str, target: str, name: str = "") -> Intent:
        """Durable once this returns. Raises ValueError for an unknown target or action."""
        if target not in self.targets:
            configured = ", ".join(sorted(self.targets)) or "none"
            raise PinningError(f"no {target} is configured for pinning (configured: "
                               f"{configured}); set [pinning] {target}_api")
        if action not in ("pin", "unpin"):
            raise ValueError(f"unknown pin action {action!r}")
        async with self._lock:  # the scan and the append are one step: no racing twin
            docs: list[dict[str, Any]] = []
            superseded: list[Intent] = []
            for other in self.intents.values():
                if other.state == "queued" and other.cid == cid and other.target == target:
                    if other.action == action:
                        return other
                    superseded.append(other)
            now = time.time()
            intent = Intent(uuid.uuid4().hex, action, cid, target, name, now, updated=now)
            docs.append(_intent_doc(intent))
            for other in superseded:
                docs.append({**_state_doc(other), "state": "superseded", "at": now})
            await trio.to_thread.run_sync(self._log.append, docs)
            for other in superseded:
                other.state, other.updated = "superseded", now
            self.intents[intent.id] = intent
            self._finished.extend(other.id for other in superseded)
        self._wake.set()
        return intent

    def status(self, cid: str) -> list[Intent]:
        return sorted((i for i in self.intents.values() if i.cid == cid), key=lambda i: i.at)

    def pending(self) -> list[Intent]:
        return sorted((i for i in self.intents.values() if i.state == "queued"),
                      key=lambda i: i.at)

    # -- applying ----------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await trio.to_thread.run_sync(self.open)
        log.info("pin queue open", queued=len(self.pending()), targets=sorted(self.targets))
        try:
            async with trio.open_nursery() as nursery:
                limiter = trio.CapacityLimiter(CONCURRENCY)
                busy: set[str] = set()
                task_status.started()
                while True:
                    now = time.time()
                    for intent in reversed(self.pending()):  # fresh pins first
                        key = f"{intent.target} {intent.cid}"  # one at a time per CID
                        if intent.next_at <= now and intent.id not in busy and key not in busy:
                            busy.update((intent.id, key))
                            nursery.start_soon(self._apply_one, intent, limiter, busy)
                    waits = [i.next_at - now for i in self.pending() if i.id not in busy]
                    self._wake = trio.Event()
                    with trio.move_on_after(max(0.05, min(waits, default=3600.0))):
                        await self._wake.wait()
        finally:
            self.close()

    async def _apply_one(self, intent: Intent, limiter: trio.CapacityLimiter,
                         busy: set[str]) -> None:
        try:
            async with limiter:
                await self._apply(intent)
        except Exception as exc:  # the journal cannot be written (disk full): retry later
            log.error("pin intent not recorded; retried", cid=intent.cid, error=str(exc))
            intent.state, intent.next_at = "queued", time.time() + self.max_backoff
        finally:
            busy.difference_update((intent.id, f"{intent.target} {intent.cid}"))
            self._wake.set()

    async def _apply(self, intent: Intent) -> None:
        if intent.state != "queued":
            return  # superseded while it waited
        target = self.targets.get(intent.target)
        bound = log.bind(cid=intent.cid, target=intent.target, action=intent.action)
        intent.attempts += 1
        try:
            if target is None:
                raise PinningError(f"{intent.target} is no longer configured")
            if intent.action == "pin":
                await target.pin(intent.cid, intent.name)
            else:
                if self.before_unpin is not None:
                    await self.before_unpin(intent)
                await target.unpin(intent.cid)
        except PinningError as exc:
            intent.error = str(exc)
            give_up = not exc.transient or (
                not isinstance(exc, RemoteUnavailableError)
                and 0 < self.max_attempts <= intent.attempts)
            if give_up:
                await self._finish(intent, "failed")
                bound.warning("pin intent failed", error=intent.error, attempts=intent.attempts)
                return
            delay = backoff(intent.attempts, self.max_backoff)
            intent.next_at = time.time() + delay
            bound.info("pin intent will be retried", error=intent.error,
                       attempts=intent.attempts, retry_in=round(delay, 1))
            return
        intent.error = ""
        if intent.state == "superseded":  # a newer intent replaced it while it ran
            bound.info("pin intent applied, then superseded", attempts=intent.attempts)
            return
        await self._finish(intent, "done")
        bound.info("pin intent applied", attempts=intent.attempts)
        for listener in self.listeners:
            listener(intent)

    async def _finish(self, intent: Intent, state: str) -> None:
        intent.state, intent.updated = state, time.time()
        await self._durable([_state_doc(intent)])
        self._finished.append(intent.id)
        while len(self._finished) > KEEP_FINISHED:  # months of pins: memory stays bounded
            old = self.intents.get(self._finished.popleft())
            if old is not None and old.state != "queued" and not _holds(old):
                del self.intents[old.id]


def _holds(i: Intent) -> bool:
    """An applied pin: the record that the remote holds the DAG (the remote tier needs it)."""
    return i.action == "pin" and i.state == "done"


def _intent_doc(i: Intent) -> dict[str, Any]:
    return {"op": "intent", "id": i.id, "action": i.action, "cid": i.cid, "target": i.target,
            "name": i.name, "at": i.at}


def _state_doc(i: Intent) -> dict[str, Any]:
    return {"op": "state", "id": i.id, "state": i.state, "attempts": i.attempts,
            "error": i.error, "at": i.updated}
