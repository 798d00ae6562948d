"""The master role: accepts tasks, schedules them on workers, and reports one outcome per task.

Decisions come from the sans-IO ``Scheduler``; this module does the I/O around it: the task
streams workers and submitters open to us, the journal (group-committed: every accepted task
is fsynced before it is acknowledged, every outcome before it is delivered), the topics, the
Arrow snapshot of the cluster state, and pinning result CIDs.

No loop here ever waits for one peer: frames to a peer go through that session's
``SendQueue``, written by the session's own task with a timeout. A peer that stops reading
fills its queue or times a write out; its session is closed and its tasks are requeued.
A journal that cannot be written (a full disk) refuses new tasks with ``DiskFullError``;
outcomes that could not be journaled wait and are journaled (then delivered) once it can.
Until then nobody sees them: waiters, queries and listings show such a task as still running,
and its worker is not acknowledged (it keeps the result and resends it).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import trio
from libp2p.abc import INetStream

from ..components import Components
from ..errors import DiskFullError, IpfsKitError, PeerBrokenError, is_disk_full
from ..logs import get_logger
from ..protocols.guard import set_guarded_handler
from ..protocols.tasks import EnvelopeError, Result, ResultBatch, Status, Task, TaskBatch, encode
from ..protocols.tasks.channel import PROTOCOL, SendQueue, TaskChannel
from ..protocols.tasks.frames import (
    MAX_BATCH,
    Accepted,
    Ack,
    Assign,
    Cancel,
    Hello,
    Query,
    Results,
    States,
    StatusFrame,
    Submit,
    TaskInfo,
    batches,
)
from ..service import TaskStatus
from ..unixfs.exporter import fetch_dag
from .journal import TaskJournal, final_record, submit_record
from .mesh import (
    Heartbeats,
    TaskBackend,
    TaskError,
    Topics,
    UnknownTaskError,
    decode_quietly,
    forever,
)
from .scheduler import Record, Scheduler, State, WorkerView
from .state import cluster_state, export_in_child

log = get_logger(__name__)

TICK = 0.5
JOURNAL_RETRY = 2.0  # seconds between attempts to journal outcomes a full disk refused
COMPACT_AFTER = 500_000
FORGET_WORKERS_AFTER = 3600.0  # journal records appended before it is rewritten
PUBLISH_BATCH = 200
PUBLISH_EVERY = 0.25  # seconds between gossip messages of new tasks and outcomes
PUBLISH_BUDGET = 192 * 1024  # bytes of tasks or results per message (pubsub takes 256 KiB)
PIN_CONCURRENCY = 4


@dataclass
class _Commit:
    docs: list[dict[str, Any]]
    done: trio.Event = field(default_factory=trio.Event)
    error: BaseException | None = None


@dataclass
class _Session:
    """One peer's task stream: frames in (its handler), frames out (its queue's own task)."""

    channel: TaskChannel
    queue: SendQueue
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    worker: bool = False  # its hello made it a worker

    def close(self) -> None:
        """End the session from anywhere without waiting: its handler cleans up."""
        self.channel.closed = True  # nothing more is queued for it
        self.scope.cancel()


class JournalError(TaskError):
    """The task journal cannot be written (not a full disk: that is DiskFullError)."""

    http_status = 503


class MasterRole:
    name = "master"

    def __init__(self, components: Components) -> None:
        c = self.c = components
        cfg = c.config.tasks
        self.me = str(c.host.get_id())
        self.topics = Topics.of(c.config.node.cluster)
        self.scheduler = Scheduler(lease=cfg.lease, retries=cfg.retries,
                                   heartbeat_timeout=cfg.heartbeat_timeout,
                                   allowed=frozenset(cfg.workers))
        self.journal = TaskJournal(Path(c.repo.path) / "tasks" / "journal",
                                   sync=c.config.storage.sync)
        self.state_dir = Path(c.repo.path) / "tasks"
        self.submitters = set(cfg.submitters)
        self.sessions: dict[str, _Session] = {}
        # Final, but the journal refused them (a full disk): retried by the ticker.
        self._unjournaled: dict[str, Record] = {}
        # Final in memory but not fsynced yet (being journaled, or in _unjournaled): not
        # acknowledged to workers nor shown to anyone as final.
        self._undurable: set[str] = set()
        self._journal_retry_at = 0.0
        self._journal_failing = False  # logged once per episode, not per attempt
        self.waiters: dict[str, trio.Event] = {}
        self.heartbeats = Heartbeats(c, self.topics, lambda: 0, lambda: 0)
        self.heartbeats.listeners.append(self._gossip_heartbeat)
        self._wake = trio.Event()
        self._commits: list[_Commit] = []
        self._commit_wake = trio.Event()
        self._announce: list[Task] = []
        self._publish: list[Result] = []
        self._topic_wake = trio.Event()
        self._pins: trio.MemorySendChannel[str]
        self._pin_queue: trio.MemoryReceiveChannel[str]
        self._pins, self._pin_queue = trio.open_memory_channel(10_000)
        self.log = log.bind(role="master")
        self.tasks: TaskBackend = self  # the task routes answer from this scheduler

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        records = await trio.to_thread.run_sync(self.journal.open)
        for record in records:
            self.scheduler.restore(record)
        self.log.info("task journal replayed", tasks=len(records),
                      open=self.scheduler.open_tasks())
        try:
            async with trio.open_nursery() as nursery:
                for name, loop in [
                    ("committer", self._committer), ("dispatcher", self._dispatcher),
                    ("ticker", self._ticker), ("topic publisher", self._topic_publisher),
                    ("tasks topic", self._watch_tasks_topic),
                    ("status topic", self.heartbeats.watch_forever),
                    ("heartbeat", self.heartbeats.publish_forever),
                    ("snapshots", self._snapshots),
                    *[("pinner", self._pinner)] * PIN_CONCURRENCY,
                ]:
                    nursery.start_soon(forever, self.log, name, loop)
                set_guarded_handler(self.c.host, PROTOCOL, self._handle_stream)
                self.log.info("master ready", cluster=self.c.config.node.cluster,
                              submitters=len(self.submitters))
                task_status.started()
        finally:
            self.journal.close()

    # -- durability --------------------------------------------------------------------------

    async def _durable(self, docs: list[dict[str, Any]]) -> None:
        """Returns once the records are fsynced (group commit with concurrent callers)."""
        if not docs:
            return
        commit = _Commit(docs)
        self._commits.append(commit)
        self._commit_wake.set()
        await commit.done.wait()
        error = commit.error
        if error is None:
            return
        if is_disk_full(error):
            raise DiskFullError(f"disk full: the task journal {self.journal.path} cannot be "
                                f"written ({error.strerror}); new tasks are refused until "
                                "space is freed") from error
        raise JournalError(f"the task journal {self.journal.path} cannot be written: "
                           f"{error}") from error

    async def _committer(self) -> None:
        while True:
            await self._commit_wake.wait()
            self._commit_wake = trio.Event()
            batch, self._commits = self._commits, []
            docs = [d for commit in batch for d in commit.docs]
            try:
                await trio.to_thread.run_sync(self.journal.append, docs)
            except Exception as exc:  # every waiter hears of it; this loop goes on
                self.log.error("task journal write failed", error=str(exc),
                               path=str(self.journal.path), records=len(docs))
                for commit in batch:
                    commit.error = exc
            finally:
                for commit in batch:
                    commit.done.set()
            if self.journal.appended > COMPACT_AFTER:  # appends wait: we are the only writer
                self.scheduler.forget_finished(self.journal.keep_finished)
                try:  # from the file itself: it holds exactly what was acknowledged
                    kept = await trio.to_thread.run_sync(self.journal.open)
                    self.log.info("task journal compacted", tasks=len(kept))
                except (OSError, ValueError) as exc:
                    self.log.error("task journal compaction failed", error=str(exc))

    # -- the backend (control socket and remote submitters) ----------------------------------

    async def submit(self, tasks: list[Task], origin: str = "local"
                     ) -> tuple[list[str], list[tuple[str, str]]]:
        now = time.time()
        fresh: list[Task] = []
        ids: list[str] = []
        refused: list[tuple[str, str]] = []
        seen: set[str] = set()
        offered = self.scheduler.handlers_offered()
        for task in tasks:
            if offered is not None and task.handler not in offered:
                refused.append((task.task_id, f"no worker allows handler {task.handler!r} "
                                              f"(allowed: {', '.join(sorted(offered))})"))
                continue
            ids.append(task.task_id)
            if task.task_id not in self.scheduler.tasks and task.task_id not in seen:
                seen.add(task.task_id)
                fresh.append(task)
        records = [Record(t, origin, now) for t in fresh]
        await self._durable([submit_record(r) for r in records])
        for record in records:
            self.scheduler.submit(record.task, origin, now)
        if records:
            self._announce += fresh
            self._topic_wake.set()
            self._wake.set()
            self.log.debug("tasks accepted", count=len(records), origin=origin)
        if refused:
            self.log.warning("tasks refused", count=len(refused), reason=refused[0][1])
        return ids, refused

    async def info(self, task_id: str) -> TaskInfo:
        record = self.scheduler.tasks.get(task_id)
        if record is None:
            raise UnknownTaskError(f"no task {task_id} on this master")
        return self._shown(record)

    def list_tasks(self, state: str | None) -> list[TaskInfo]:
        infos = map(self._shown, self.scheduler.tasks.values())
        return [i for i in infos if state is None or i.state == state]

    def stats(self) -> dict[str, int]:
        return dict(Counter(self._shown(r).state for r in self.scheduler.tasks.values()))

    async def wait(self, task_id: str, timeout: float) -> TaskInfo:
        record = self.scheduler.tasks.get(task_id)
        if record is None:
            raise UnknownTaskError(f"no task {task_id} on this master")
        if not self._delivered(record):
            event = self.waiters.setdefault(task_id, trio.Event())
            with trio.move_on_after(timeout):
                await event.wait()
        return self._shown(record)

    async def cancel(self, task_id: str) -> TaskInfo:
        if task_id not in self.scheduler.tasks:
            raise UnknownTaskError(f"no task {task_id} on this master")
        await self._cancel(task_id)
        return self._shown(self.scheduler.tasks[task_id])

    def _delivered(self, record: Record) -> bool:
        """Final and fsynced: only then may anyone see the outcome."""
        return record.final and record.task.task_id not in self._undurable

    def _shown(self, record: Record) -> TaskInfo:
        """The task as others may see it: an outcome not yet journaled is not shown (a crash
        now would run the task again), so the task still reads as running (or queued)."""
        if not record.final or self._delivered(record):
            return record.info()
        state = State.ASSIGNED if record.worker is not None else State.QUEUED
        return TaskInfo(record.task.task_id, state.value, record.task.handler, record.worker,
                        None, None, record.attempts)

    async def _cancel(self, task_id: str) -> None:
        record, worker = self.scheduler.cancel(task_id, time.time())
        if record is None:
            return
        if worker is not None:
            self._post(worker, Cancel((task_id,)))
        await self._finished([record])

    def workers(self) -> list[dict[str, Any]]:
        now = time.time()
        return [{"peer": w.peer, "capacity": w.capacity, "running": len(w.running),
                 "done": w.done, "cpu": w.cpu, "memory": w.memory, "disk_free": w.disk_free,
                 "connected": w.connected, "last_seen": round(now - w.last_seen, 3),
                 "alive": w.connected and now - w.last_seen <= self.scheduler.heartbeat_timeout,
                 "handlers": sorted(w.handlers)}
                for w in sorted(self.scheduler.workers.values(), key=lambda w: w.peer)]

    def cluster_state(self) -> dict[str, Any]:
        return cluster_state(self.me, self.scheduler.workers.values(),
                             self.scheduler.tasks.values(), time.time())

    # -- outcomes ----------------------------------------------------------------------------

    async def _finished(self, records: list[Record]) -> bool:
        """Journal final outcomes, then deliver each exactly once (waiters, topic, origin,
        pins). When the journal refuses them (a full disk) they wait in ``_unjournaled`` for
        the ticker (False then), unseen: see ``_shown``. Cancelled half-way (the session that
        brought them closed), they wait there too: the ticker journals and delivers them."""
        if not records:
            return True
        ids = [r.task.task_id for r in records]
        self._undurable.update(ids)
        try:
            await self._durable([final_record(r) for r in records])
        except (DiskFullError, JournalError) as exc:
            if not self._journal_failing:
                self._journal_failing = True
                self.log.warning("task outcomes not journaled yet; retried every "
                                 f"{JOURNAL_RETRY:g} s", count=len(records), error=str(exc))
                self._journal_retry_at = time.monotonic() + JOURNAL_RETRY
            self._unjournaled.update(zip(ids, records, strict=True))
            return False
        except BaseException:  # cancelled: journaled or not, the ticker finishes the job
            self._unjournaled.update(zip(ids, records, strict=True))
            raise
        self._undurable.difference_update(ids)
        by_origin: dict[str, list[Result]] = {}
        for record in records:
            result = record.outcome()
            by_origin.setdefault(record.origin, []).append(result)
            self._publish.append(result)
            self._wake_waiter(record.task.task_id)
            if record.output is not None and self.c.config.tasks.pin_results:
                try:
                    self._pins.send_nowait(record.output)
                except trio.WouldBlock:
                    self.log.warning("result pin queue full; not pinned", cid=record.output)
        self._topic_wake.set()
        for origin, results in by_origin.items():
            if origin != "local":  # a submitter offline now asks again when it reconnects
                for batch in batches(results):
                    self._post(origin, Results(batch))
        return True

    def _wake_waiter(self, task_id: str) -> None:
        event = self.waiters.pop(task_id, None)
        if event is not None:
            event.set()

    async def _pinner(self) -> None:
        """Fetch each result's DAG from the worker over Bitswap and pin it here."""
        async for cid in self._pin_queue:
            try:
                with trio.fail_after(120):
                    await fetch_dag(self.c.fetch, cid)
                    await self.c.blocks.store.pin(cid, recursive=True)
                self.log.debug("result pinned", cid=cid)
                for target in self.c.pins.configured:  # and on Kubo / Cluster, durably queued
                    await self.c.pins.pin(cid, target, name="ipfs-kit-node task result")
            except (IpfsKitError, OSError, trio.TooSlowError) as exc:
                self.log.warning("result not pinned", cid=cid, error=str(exc) or "timeout")

    # -- scheduling --------------------------------------------------------------------------

    async def _dispatcher(self) -> None:
        """Assignments are posted to each worker's queue: this loop never waits for a peer."""
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            for worker, tasks in self.scheduler.assign(time.time()).items():
                for batch in batches(tasks):
                    if not self._post(worker, Assign(batch)):
                        await self._lost(worker)
                        break

    async def _ticker(self) -> None:
        while True:
            await trio.sleep(TICK)
            await self._tick()

    async def _tick(self) -> None:
        if self._unjournaled and time.monotonic() >= self._journal_retry_at:
            self._journal_retry_at = time.monotonic() + JOURNAL_RETRY
            waiting = list(self._unjournaled.values())
            self._unjournaled = {}
            if await self._finished(waiting):
                self._journal_failing = False
                self.log.info("task outcomes journaled after an earlier failure",
                              count=len(waiting))
                by_worker: dict[str, list[str]] = {}  # the acks we held back
                for record in waiting:
                    if record.worker is not None:
                        by_worker.setdefault(record.worker, []).append(record.task.task_id)
                for worker, ids in by_worker.items():
                    for start in range(0, len(ids), MAX_BATCH):
                        self._post(worker, Ack(tuple(ids[start:start + MAX_BATCH])))
        for peer in self.scheduler.hoarding(time.time()):
            session = self.sessions.get(peer)
            self.log.warning("task session closed: the worker holds tasks it does not run",
                             peer=peer)
            if session is not None:
                session.close()  # its handler requeues what it held
            else:
                await self._lost(peer)
        failed, requeued = self.scheduler.expire(time.time())
        if requeued:
            self.log.info("tasks requeued (worker silent or lease lapsed)", count=len(requeued))
            self._wake.set()
        await self._finished(failed)
        if self.scheduler.queued():
            self._wake.set()
        for peer in self.scheduler.prune_workers(time.time(), FORGET_WORKERS_AFTER):
            self.log.info("worker forgotten after an hour away", peer=peer)

    async def _lost(self, worker: str) -> None:
        await self._requeued(*self.scheduler.leave(worker, time.time()), worker=worker,
                             why="worker gone; its tasks are requeued")

    async def _requeued(self, requeued: list[str], failed: list[Record], *, worker: str,
                        why: str) -> None:
        if requeued:
            self.log.info(why, peer=worker, count=len(requeued))
        self._wake.set()
        await self._finished(failed)

    def _gossip_heartbeat(self, status: Status, now: float) -> None:
        """Heartbeats from the status topic: only ``tasks.workers`` (if set) count."""
        if not self.scheduler.heartbeat(status, now) and status.role == "worker" \
                and not self.scheduler.may_work(status.peer):
            self.log.debug("heartbeat from a peer not in tasks.workers ignored",
                           peer=status.peer)

    # -- sessions ----------------------------------------------------------------------------

    def _post(self, peer: str, *frames: Any) -> bool:
        """Queue frames for a peer without waiting for it; False when it has no session or
        has stopped reading (its queue is full: the session is closed, its tasks requeued)."""
        session = self.sessions.get(peer)
        if session is None:
            return False
        if session.queue.post(*frames):
            return True
        if not session.channel.closed:
            self.log.warning("task session closed: the peer is not reading (send queue full)",
                             peer=peer, queued=session.queue.queued)
            session.close()
        return False

    async def _write_session(self, peer: str, session: _Session) -> None:
        try:
            await session.queue.run()
        except PeerBrokenError as exc:
            self.log.warning("task session closed: write failed", peer=peer, error=str(exc))
            session.close()

    async def _handle_stream(self, stream: INetStream) -> None:
        channel = TaskChannel(stream)
        peer = str(channel.peer)
        session = _Session(channel, SendQueue(channel))
        previous = self.sessions.get(peer)
        self.sessions[peer] = session
        if previous is not None:
            previous.close()
        try:
            with session.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._write_session, peer, session)
                    try:
                        await self._read_session(peer, session)
                    finally:
                        nursery.cancel_scope.cancel()
        finally:
            if self.sessions.get(peer) is session:
                del self.sessions[peer]
                if session.worker:
                    try:
                        await self._lost(peer)
                    except Exception as exc:
                        self.log.warning("lost worker's tasks not requeued", peer=peer,
                                         error=str(exc))
            await channel.close()

    async def _read_session(self, peer: str, session: _Session) -> None:
        try:
            async for frame in session.channel.frames():
                if await self._on_frame(peer, frame):
                    session.worker = True
        except EnvelopeError as exc:
            self.log.warning("malformed task frame; session closed", peer=peer, error=str(exc))
        except Exception as exc:  # the edge of the session: it ends, the node does not
            self.log.warning("task session failed; closed", peer=peer, error=str(exc),
                             kind=type(exc).__name__)

    async def _on_frame(self, peer: str, frame: Any) -> bool:
        """Handle one frame; True when it made the peer a worker."""
        now = time.time()
        if isinstance(frame, Hello):
            if frame.role != "worker" or frame.capacity <= 0:
                return False
            if not self.scheduler.may_work(peer):
                self.log.warning("worker not in tasks.workers refused", peer=peer)
                return False
            outcome = self.scheduler.join(peer, frame.capacity, frame.handlers, now)
            self.log.info("worker joined", peer=peer, capacity=frame.capacity)
            await self._requeued(*outcome, worker=peer,
                                 why="worker reconnected; what it ran is requeued")
            return True
        if isinstance(frame, StatusFrame):
            if frame.status.peer == peer:
                self.scheduler.heartbeat(frame.status, now)
        elif isinstance(frame, Results):
            await self._on_results(peer, frame.results)
        elif isinstance(frame, Submit):
            await self._on_submit(peer, frame)
        elif isinstance(frame, Query):
            states = tuple(self._shown(self.scheduler.tasks[i]) for i in frame.ids
                           if i in self.scheduler.tasks)
            self._post(peer, States(frame.req, states))
        elif isinstance(frame, Cancel):
            for task_id in frame.ids:
                record = self.scheduler.tasks.get(task_id)
                if record is not None and record.origin == peer:
                    await self._cancel(task_id)
        else:
            self.log.warning("unexpected task frame ignored", peer=peer,
                             op=type(frame).__name__)
        return False

    async def _on_results(self, peer: str, results: tuple[Result, ...]) -> None:
        now = time.time()
        finals: list[Record] = []
        for result in results:
            if result.worker != peer:
                self.log.warning("result naming another worker ignored", peer=peer,
                                 task_id=result.task_id)
                continue
            record = self.scheduler.complete(result, now)
            if record is not None:
                finals.append(record)
            elif result.error is not None:
                self.log.info("task failed; retried", task_id=result.task_id,
                              worker=peer, error=result.error)
        if await self._finished(finals):  # acknowledged once journaled; else resent later
            # A resent result whose outcome is still not journaled (waiting for disk space,
            # or being written for its first copy) is not acknowledged yet either: the ticker
            # (or that first copy's handler) acknowledges it once it is durable.
            ids = tuple(r.task_id for r in results if r.task_id not in self._undurable)
            if ids:
                self._post(peer, Ack(ids))
        self._wake.set()

    async def _on_submit(self, peer: str, frame: Submit) -> None:
        if peer not in self.submitters:
            self.log.warning("submission from a peer not in tasks.submitters refused",
                             peer=peer, tasks=len(frame.tasks))
            reason = f"peer {peer} may not submit to this master (add it to tasks.submitters)"
            self._post(peer, Accepted(frame.req, (), tuple(
                (t.task_id, reason) for t in frame.tasks)))
            return
        try:
            ids, refused = await self.submit(list(frame.tasks), origin=peer)
        except (TaskError, DiskFullError) as exc:
            ids, refused = [], [(t.task_id, str(exc)) for t in frame.tasks]
        self._post(peer, Accepted(frame.req, tuple(ids), tuple(refused)))
        # A resubmitted task that already finished: send its outcome again.
        done = [r for r in map(self.scheduler.tasks.get, ids)
                if r is not None and self._delivered(r)]
        for batch in batches([r.outcome() for r in done]):
            self._post(peer, Results(batch))

    # -- topics ------------------------------------------------------------------------------

    async def _topic_publisher(self) -> None:
        """Announcements and outcomes, batched: gossip is the shared view, not the carrier."""
        while True:
            if not (self._announce or self._publish):
                await self._topic_wake.wait()
            self._topic_wake = trio.Event()
            announce, self._announce = self._announce, []
            publish, self._publish = self._publish, []
            messages = [(self.topics.tasks, encode(TaskBatch(tasks))) for tasks in batches(
                announce, budget=PUBLISH_BUDGET, max_items=PUBLISH_BATCH)]
            messages += [(self.topics.results, encode(ResultBatch(results))) for results in
                         batches(publish, budget=PUBLISH_BUDGET, max_items=PUBLISH_BATCH)]
            for topic, data in messages:
                try:
                    await self.c.pubsub.publish(topic, data)
                except Exception as exc:  # gossip is best effort; the streams carry the rest
                    self.log.info("task-mesh publish failed", topic=topic, error=str(exc))
            # Coalesce into fewer, larger messages: each one is signed here and verified by
            # every peer (at 100 tasks/s, 0.05 s cost a tenth of the master's CPU). A full
            # message's worth goes out at once (a burst is not held back to 4 messages/s).
            with trio.move_on_after(PUBLISH_EVERY):
                while len(self._announce) + len(self._publish) < PUBLISH_BATCH:
                    await self._topic_wake.wait()
                    self._topic_wake = trio.Event()

    async def _watch_tasks_topic(self) -> None:
        """Listed submitters may also submit on the topic; anyone else is refused, loudly."""
        async for message in self.c.pubsub.subscribe(self.topics.tasks):
            sender = str(message.sender)
            if sender == self.me:
                continue
            body = decode_quietly(message)
            if body is None:
                continue
            tasks = list(body.tasks) if isinstance(body, TaskBatch) else \
                [body] if isinstance(body, Task) else None
            if tasks is None:
                self.log.warning("non-task message on the tasks topic ignored", peer=sender)
            elif sender not in self.submitters:
                self.log.warning("task from a peer not in tasks.submitters ignored",
                                 peer=sender, tasks=len(tasks))
            else:
                try:
                    await self.submit(tasks, origin=sender)
                except (TaskError, DiskFullError) as exc:  # it can ask again on the stream
                    self.log.warning("tasks from the topic refused", peer=sender,
                                     tasks=len(tasks), error=str(exc))

    # -- cluster state -----------------------------------------------------------------------

    async def _snapshots(self) -> None:
        snapshot = self.state_dir / "state.msgpack"
        while True:
            await trio.sleep(self.c.config.tasks.snapshot_period)
            # Built and packed in a thread: with many tasks kept (up to keep_finished) this is
            # hundreds of ms of CPU that would stall every stream and request on the loop. The
            # records are read as they are, maybe mid-update: a view, not a journal.
            view = _Snapshot(self.me, list(self.scheduler.workers.values()),
                             list(self.scheduler.tasks.values()))
            try:
                await trio.to_thread.run_sync(view.write, snapshot)
            except OSError as exc:
                self.log.warning("cluster state snapshot not written", error=str(exc))
                continue
            await export_in_child(snapshot, self.state_dir)


@dataclass
class _Snapshot:
    """The scheduler's workers and records, copied on the loop (two list copies), packed and
    written in a worker thread."""

    me: str
    workers: list[WorkerView]
    records: list[Record]

    def write(self, path: Path) -> None:
        state = cluster_state(self.me, self.workers, self.records, time.time())
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(msgpack.packb(state, use_bin_type=True))
        tmp.replace(path)

