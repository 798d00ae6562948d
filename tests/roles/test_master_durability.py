"""The master shows and acknowledges an outcome only once it is fsynced: with the journal
refusing writes (a full disk), a worker that resends its result is not acknowledged (it would
forget the result, and a master crash would run the task again), and waiters, queries and
listings still see the task as running. The real MasterRole's outcome path and committer, with
a real journal whose appends fail with ENOSPC; no daemon (the disk-full daemon test is in
tests/hostile/test_mesh_hostile.py)."""

from __future__ import annotations

import errno
import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import trio

from ipfs_kit_node.api.router import Request, Router
from ipfs_kit_node.api.routes.tasks import register_task_routes
from ipfs_kit_node.errors import DiskFullError
from ipfs_kit_node.logs import get_logger
from ipfs_kit_node.protocols.tasks import Result, Task
from ipfs_kit_node.protocols.tasks.frames import Ack, Assign, Cancel
from ipfs_kit_node.roles.committer import JournalCommitter, JournalError
from ipfs_kit_node.roles.gossip import TaskGossip
from ipfs_kit_node.roles.journal import TaskJournal
from ipfs_kit_node.roles.master import MasterRole
from ipfs_kit_node.roles.mesh import Topics, UnknownTaskError
from ipfs_kit_node.roles.outcomes import Outcomes
from ipfs_kit_node.roles.scheduler import Scheduler
from ipfs_kit_node.roles.sessions import Sessions

WORKER = "worker-peer"


class _Queue:
    def __init__(self) -> None:
        self.frames: list[Any] = []

    def post(self, *frames: Any) -> bool:
        self.frames += frames
        return True


def bare_master(tmp_path: Path) -> MasterRole:
    """A MasterRole with the parts its outcome path uses, and no host (its __init__ needs
    one): the committer, outcomes, scheduler, journal and session map are the real ones."""
    m = object.__new__(MasterRole)
    m.c = SimpleNamespace(config=SimpleNamespace(tasks=SimpleNamespace(pin_results=False)))  # type: ignore[assignment]
    m.log = get_logger(__name__)
    m.scheduler = Scheduler()
    m.journal = TaskJournal(tmp_path / "journal", sync=True)
    m.journal.open()
    m.committer = JournalCommitter(m.journal, m.scheduler.forget_finished, m.log)
    m.sessions = Sessions(m.log, m._on_frame, m._lost)
    session = SimpleNamespace(queue=_Queue(), channel=SimpleNamespace(closed=False))
    m.sessions.by_peer[WORKER] = session  # type: ignore[assignment]
    m.gossip = TaskGossip(m.c, Topics.of("test"), "master-peer", set(), m.submit, m.log)
    m.outcomes = Outcomes(m.committer, m.sessions.post, m.gossip, None, m.log,
                          current=m._current)
    m._wake, m._unaccepted, m._refused = trio.Event(), {}, set()
    m._acks, m._ack_wake = {}, trio.Event()
    return m


def assigned(m: MasterRole) -> list[str]:
    """The task IDs posted to the worker in Assign frames (a submission assigns at once)."""
    frames = m.sessions.by_peer[WORKER].queue.frames  # type: ignore[attr-defined]
    return [t.task_id for f in frames if isinstance(f, Assign) for t in f.tasks]


def acked(m: MasterRole) -> list[str]:
    m._send_acks()  # what the acknowledger loop would send ACK_DELAY later
    frames = m.sessions.by_peer[WORKER].queue.frames  # type: ignore[attr-defined]
    return [i for f in frames if isinstance(f, Ack) for i in f.ids]


async def test_outcomes_not_journaled_are_neither_acked_nor_shown(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    m = bare_master(tmp_path)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(m.committer.run)
        await m.submit([Task("t1", "noop"), Task("t2", "noop")])
        m.scheduler.join(WORKER, 4, (), time.time())
        assert len(m.scheduler.assign(time.time())[WORKER]) == 2
        results = tuple(Result(i, WORKER, None, None, 0) for i in ("t1", "t2"))

        real_append = m.journal.append

        def full(docs: list[dict[str, Any]]) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(m.journal, "append", full)
        await m._on_results(WORKER, results)
        assert acked(m) == []  # not durable: the worker keeps the results
        assert set(m.outcomes.unjournaled) == {"t1", "t2"}
        # The worker reconnects and resends: the outcomes are final in memory but still not
        # journaled, so they are still not acknowledged.
        await m._on_results(WORKER, results)
        assert acked(m) == []
        # Nobody sees the outcome yet: a crash now would run the tasks again.
        with trio.fail_after(10):
            shown = await m.wait("t1", 0.2)
        assert shown.state == "assigned" and shown.output is None
        assert (await m.info("t2")).state == "assigned"
        assert m.stats() == {"assigned": 2}
        assert m.list_tasks("done") == []
        assert m.gossip.pending_results == []  # nor on the results topic

        waiter: dict[str, Any] = {}

        async def wait_t2() -> None:
            waiter["info"] = await m.wait("t2", 30)

        nursery.start_soon(wait_t2)
        await trio.sleep(0.1)
        assert "info" not in waiter
        monkeypatch.setattr(m.journal, "append", real_append)  # space is back
        m.outcomes.retry_at = 0.0  # the ticker's next attempt is due
        await m._tick()
        assert sorted(acked(m)) == ["t1", "t2"]
        with trio.fail_after(10):
            while "info" not in waiter:
                await trio.sleep(0.01)
        assert waiter["info"].state == "done"
        assert (await m.info("t1")).state == "done"
        assert {r.task_id for r in m.gossip.pending_results} == {"t1", "t2"}
        # A late resend now is acknowledged at once (and delivered nowhere twice).
        await m._on_results(WORKER, results)
        assert sorted(acked(m)) == ["t1", "t1", "t2", "t2"]
        assert len(m.gossip.pending_results) == 2
        nursery.cancel_scope.cancel()
    m.journal.close()
    kept = TaskJournal(tmp_path / "journal").open()
    assert {r.task.task_id: r.state.value for r in kept} == {"t1": "done", "t2": "done"}


async def test_outcomes_cancelled_mid_journal_are_finished_by_the_ticker(
        tmp_path: Path) -> None:
    """The session that brought a result closes while its outcome is being journaled: the
    outcome is still journaled, delivered and acknowledged (by the ticker)."""
    m = bare_master(tmp_path)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(m.committer.run)
        await m.submit([Task("t1", "noop")])
        m.scheduler.join(WORKER, 4, (), time.time())
        m.scheduler.assign(time.time())
        with trio.CancelScope() as scope:
            scope.cancel()  # cancelled while it waits for the commit
            await m._on_results(WORKER, (Result("t1", WORKER, None, None, 0),))
        assert acked(m) == [] and "t1" in m.outcomes.unjournaled
        assert (await m.info("t1")).state == "assigned"
        await m._tick()
        assert acked(m) == ["t1"]
        assert (await m.info("t1")).state == "done"
        nursery.cancel_scope.cancel()
    m.journal.close()


async def test_a_submission_the_journal_refuses_is_withdrawn(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tasks are assigned while their submission is journaled: when the journal refuses it
    (a full disk) the caller gets the error, nobody sees the task, its worker is told to
    cancel it, and the result it may still send is acknowledged and dropped."""
    m = bare_master(tmp_path)
    m.scheduler.join(WORKER, 4, (), time.time())

    def full(docs: list[dict[str, Any]]) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(m.journal, "append", full)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(m.committer.run)
        nursery.start_soon(m._dispatcher)
        with pytest.raises(DiskFullError):
            await m.submit([Task("t1", "noop")])
        frames = m.sessions.by_peer[WORKER].queue.frames  # type: ignore[attr-defined]
        assert [type(f) for f in frames] == [Assign, Cancel]  # assigned, then withdrawn
        assert m.list_tasks(None) == [] and m.stats() == {}
        with pytest.raises(UnknownTaskError):
            await m.info("t1")
        assert not m.scheduler.workers[WORKER].running
        await m._on_results(WORKER, (Result("t1", WORKER, None, None, 1),))
        assert acked(m) == ["t1"] and m.gossip.pending_results == []
        nursery.cancel_scope.cancel()
    m.journal.close()
    assert TaskJournal(tmp_path / "journal").open() == []


def _slow_journal(m: MasterRole, monkeypatch: pytest.MonkeyPatch,
                  fail: bool = False) -> threading.Event:
    """Appends wait for the returned event (a slow fsync), then write (or fail: ENOSPC)."""
    gate = threading.Event()
    real = m.journal.append

    def slow(docs: list[dict[str, Any]]) -> None:
        gate.wait(20)
        if fail:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(docs)

    monkeypatch.setattr(m.journal, "append", slow)
    return gate


async def test_an_outcome_cancelled_while_its_submission_is_journaled_is_retried(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's session closes while its result waits for the task's submission to be
    journaled: the outcome is neither shown nor acknowledged, and the ticker journals,
    delivers and acknowledges it (it was shown done, acked and never journaled)."""
    m = bare_master(tmp_path)
    gate = _slow_journal(m, monkeypatch)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(m.committer.run)
        m.scheduler.join(WORKER, 4, (), time.time())
        nursery.start_soon(m.submit, [Task("t1", "noop")])
        await trio.sleep(0.05)
        assert "t1" in m._unaccepted and assigned(m) == ["t1"]

        async def release() -> None:
            await trio.sleep(0.2)
            gate.set()

        nursery.start_soon(release)
        with trio.fail_after(15), trio.CancelScope() as scope:
            scope.cancel()  # the session that brought the result closes
            await m._on_results(WORKER, (Result("t1", WORKER, "bafyout", None, 1),))
        assert "t1" in m.outcomes.unjournaled and acked(m) == []
        with trio.fail_after(15):  # the submission's write goes on (shielded)
            while "t1" in m._unaccepted:
                await trio.sleep(0.01)
        assert (await m.info("t1")).state == "assigned"
        m.outcomes.retry_at = 0.0
        await m._tick()
        assert acked(m) == ["t1"]
        assert (await m.info("t1")).state == "done"
        nursery.cancel_scope.cancel()
    m.journal.close()
    kept = TaskJournal(tmp_path / "journal").open()
    assert {r.task.task_id: r.state.value for r in kept} == {"t1": "done"}


@pytest.mark.parametrize("fail", [False, True])
async def test_a_resubmission_waits_for_a_cancelled_submission_s_write(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail: bool) -> None:
    """The submitter leaves while its submission is journaled, and submits again: the second
    call is acknowledged only once the first write is durable, and refused if that write
    failed (the task withdrawn, not left in memory unjournaled)."""
    m = bare_master(tmp_path)
    gate = _slow_journal(m, monkeypatch, fail)
    answer: dict[str, Any] = {}
    first = trio.CancelScope()

    async def submit_first() -> None:
        with first:
            try:
                await m.submit([Task("t1", "noop")])
            except DiskFullError:  # the write failed: its caller hears of it, if still there
                assert fail

    async def submit_again() -> None:
        answer["ids"] = await m.submit([Task("t1", "noop")])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(m.committer.run)
        nursery.start_soon(submit_first)
        await trio.sleep(0.05)
        first.cancel()  # the HTTP client hung up, or the submitter's session was replaced
        nursery.start_soon(submit_again)
        await trio.sleep(0.3)
        assert "ids" not in answer  # nothing durable yet: not acknowledged
        gate.set()
        with trio.fail_after(15):
            while "ids" not in answer:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    m.journal.close()
    kept = TaskJournal(tmp_path / "journal").open()
    if fail:
        ids, refused = answer["ids"]
        assert ids == [] and [i for i, _ in refused] == ["t1"]
        assert m.scheduler.tasks == {} and kept == []
    else:
        assert answer["ids"] == (["t1"], [])
        assert [r.task.task_id for r in kept] == ["t1"]


async def test_a_submission_queued_when_the_committer_stops_is_refused(tmp_path: Path) -> None:
    """The master stopping: a commit still queued fails (a shielded submit returns, the task
    withdrawn) and later ones are refused at once, instead of waiting forever."""
    m = bare_master(tmp_path)
    async with trio.open_nursery() as nursery:
        refused: list[BaseException] = []

        async def submit() -> None:
            try:
                await m.submit([Task("t1", "noop")])
            except JournalError as exc:
                refused.append(exc)

        nursery.start_soon(submit)
        await trio.sleep(0.05)  # queued; the committer is not running yet
        with trio.CancelScope() as stopping:
            stopping.cancel()
            await m.committer.run()
        with trio.fail_after(10):
            while not refused:
                await trio.sleep(0.01)
        assert m.scheduler.tasks == {} and "t1" not in m._unaccepted
        with pytest.raises(JournalError):
            await m.submit([Task("t2", "noop")])
    m.journal.close()


async def test_a_failure_is_acknowledged_before_its_task_is_assigned_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed result is requeued at once while the batch's other outcome is fsynced: its
    ack goes before (or with) the next Assign of that task, so the worker, no longer holding
    the failure, runs the task instead of sending the failure again as the new attempt."""
    m = bare_master(tmp_path)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(m.committer.run)
        await m.submit([Task("ok", "noop"), Task("bad", "noop")])
        m.scheduler.join(WORKER, 2, (), time.time())
        assert len(m.scheduler.assign(time.time())[WORKER]) == 2
        gate = _slow_journal(m, monkeypatch)
        results = (Result("ok", WORKER, None, None, 1), Result("bad", WORKER, None, "boom", 1))
        nursery.start_soon(m._on_results, WORKER, results)
        await trio.sleep(0.1)  # "ok" is being journaled; "bad" is queued again
        nursery.start_soon(m._dispatcher)
        m._wake.set()
        frames = m.sessions.by_peer[WORKER].queue.frames  # type: ignore[attr-defined]
        with trio.fail_after(10):
            while not any(isinstance(f, Assign) for f in frames):
                await trio.sleep(0.01)
        first_assign = next(i for i, f in enumerate(frames) if isinstance(f, Assign))
        acked_before = [i for f in frames[:first_assign] if isinstance(f, Ack) for i in f.ids]
        assert acked_before == ["bad"]
        assert [t.task_id for t in frames[first_assign].tasks] == ["bad"]
        gate.set()
        with trio.fail_after(10):
            while "ok" not in acked(m):
                await trio.sleep(0.01)
        assert acked(m) == ["bad", "ok"]
        nursery.cancel_scope.cancel()
    m.journal.close()


async def test_submit_and_wait_reports_a_task_it_cannot_wait_on_in_its_entry(
        tmp_path: Path) -> None:
    """``task/submit?wait=true`` (its route on the real master): a task forgotten while the
    request waits on another (the journal's compaction, here ``forget_finished`` called
    directly) gets its error in its own entry; the answer is not an error."""
    m = bare_master(tmp_path)
    router = Router()
    register_task_routes(router, m, "me", lambda: ())
    submit = router._routes["/api/v0/task/submit"]["POST"]
    body = json.dumps({"tasks": [{"handler": "noop", "task_id": i} for i in ("t1", "t2")]})
    request = Request("POST", "/api/v0/task/submit", {"wait": ["true"], "timeout": ["30"]},
                      body.encode())
    answer: dict[str, Any] = {}

    async def call() -> None:
        answer.update(json.loads((await submit(request)).body))  # type: ignore[arg-type]

    async with trio.open_nursery() as nursery:
        nursery.start_soon(m.committer.run)
        m.scheduler.join(WORKER, 4, (), time.time())
        nursery.start_soon(call)
        with trio.fail_after(10):
            while len(m.scheduler.tasks) < 2 or m._unaccepted:
                await trio.sleep(0.01)
        assert assigned(m) == ["t1", "t2"]
        await m._on_results(WORKER, (Result("t2", WORKER, None, None, 1),))
        assert m.scheduler.forget_finished(0) == 1  # what a compaction does
        await m._on_results(WORKER, (Result("t1", WORKER, None, None, 1),))
        with trio.fail_after(10):
            while not answer:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    m.journal.close()
    assert answer["Accepted"] == ["t1", "t2"]
    t1, t2 = answer["Tasks"]
    assert (t1["ID"], t1["State"]) == ("t1", "done")
    assert t2["ID"] == "t2" and t2["State"] is None and "no task t2" in t2["Error"]


def _count_appends(m: MasterRole, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Each journal append (one fsync), as the ops and task IDs of its records."""
    appends: list[list[str]] = []
    real = m.journal.append

    def counted(docs: list[dict[str, Any]]) -> None:
        appends.append([f"{d['op']}:{d['task']['task_id'] if d['op'] == 'submit' else d['id']}"
                        for d in docs])
        real(docs)

    monkeypatch.setattr(m.journal, "append", counted)
    return appends


async def test_a_waited_submission_is_journaled_with_its_outcome(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``submit(waiting=True)`` (``task/submit?wait=true``): the submission lingers, the task
    runs meanwhile, and its outcome goes out in the same append (one fsync, submission
    first); the caller is acknowledged only then. Without an outcome it goes out alone."""
    m = bare_master(tmp_path)
    appends = _count_appends(m, monkeypatch)
    answer: dict[str, Any] = {}

    async def submit(task_id: str) -> None:
        answer[task_id] = await m.submit([Task(task_id, "noop")], waiting=True)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(m.committer.run)
        m.scheduler.join(WORKER, 4, (), time.time())
        nursery.start_soon(submit, "t1")
        await trio.sleep(0.01)
        assert assigned(m) == ["t1"]
        assert appends == [] and "t1" not in answer  # lingering: nothing acknowledged
        with pytest.raises(UnknownTaskError):  # nor shown
            await m.info("t1")
        with trio.fail_after(10):
            assert await m._finish([m.scheduler.complete(  # type: ignore[list-item]
                Result("t1", WORKER, None, None, 1), time.time())])
            while "t1" not in answer:
                await trio.sleep(0.01)
        assert appends == [["submit:t1", "final:t1"]]
        assert answer["t1"] == (["t1"], []) and (await m.info("t1")).state == "done"
        with trio.fail_after(10):  # no outcome in time: the submission goes out alone
            await submit("t2")
        assert appends[1:] == [["submit:t2"]]
        nursery.cancel_scope.cancel()
    m.journal.close()
    kept = TaskJournal(tmp_path / "journal").open()
    assert {r.task.task_id: r.state.value for r in kept} == {"t1": "done", "t2": "queued"}


async def test_a_waited_submission_refused_with_its_outcome_is_withdrawn(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The append holding a lingering submission and its outcome fails (a full disk): the
    caller gets the error, the outcome is delivered to nobody (not shown, not published),
    and the ticker acknowledges the result to the worker so that it forgets it."""
    m = bare_master(tmp_path)

    def full(docs: list[dict[str, Any]]) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(m.journal, "append", full)
    refused: list[BaseException] = []

    async def submit() -> None:
        try:
            await m.submit([Task("t1", "noop")], waiting=True)
        except DiskFullError as exc:
            refused.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(m.committer.run)
        m.scheduler.join(WORKER, 4, (), time.time())
        nursery.start_soon(submit)
        await trio.sleep(0.01)
        assert assigned(m) == ["t1"]
        with trio.fail_after(10):
            await m._on_results(WORKER, (Result("t1", WORKER, None, None, 1),))
            while not refused:
                await trio.sleep(0.01)
        assert m.scheduler.tasks == {} and acked(m) == []
        with pytest.raises(UnknownTaskError):
            await m.info("t1")
        m.outcomes.retry_at = 0.0
        await m._tick()
        assert acked(m) == ["t1"] and not m.outcomes.unjournaled and not m.outcomes.undurable
        assert m.gossip.pending_results == []
        nursery.cancel_scope.cancel()
    m.journal.close()
    assert TaskJournal(tmp_path / "journal").open() == []


async def test_a_worker_refusing_an_inline_assignment_is_left_to_the_dispatcher(
        tmp_path: Path) -> None:
    """Submissions assign at once; a worker whose send queue refuses the Assign (it stopped
    reading) is handed to the dispatcher, which requeues its tasks."""
    m = bare_master(tmp_path)
    session: Any = m.sessions.by_peer[WORKER]
    session.queue.post, session.queue.queued = lambda *frames: False, 0
    session.close = lambda: None  # a real session's handler would then call _lost
    async with trio.open_nursery() as nursery:
        nursery.start_soon(m.committer.run)
        m.scheduler.join(WORKER, 4, (), time.time())
        await m.submit([Task("t1", "noop")])
        assert m._refused == {WORKER} and m._wake.is_set()
        nursery.start_soon(m._dispatcher)
        with trio.fail_after(10):
            while m.scheduler.tasks["t1"].state.value != "queued":
                await trio.sleep(0.01)
        assert not m.scheduler.workers[WORKER].connected and not m._refused
        nursery.cancel_scope.cancel()
    m.journal.close()


def test_gossip_wakes_its_publisher_only_when_there_is_work(tmp_path: Path) -> None:
    """While the publisher waits out its period, a task or outcome does not wake it (it did,
    once per task); the first item after a quiet spell and a full message's worth do."""
    from ipfs_kit_node.roles.gossip import PUBLISH_BATCH

    gossip = bare_master(tmp_path).gossip
    gossip.publish([Result("r0", WORKER)])
    assert gossip._wake.is_set()  # idle publisher: the first item wakes it
    gossip._wake, gossip._pacing = trio.Event(), True
    gossip.announce([Task("t0", "noop")])
    gossip.publish([Result(f"r{i}", WORKER) for i in range(1, PUBLISH_BATCH - 2)])
    assert not gossip._wake.is_set()
    gossip.publish([Result("last", WORKER)])  # a full message's worth
    assert gossip._wake.is_set()
