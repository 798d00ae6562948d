"""The master's scheduler and journal, without sockets: decisions in, decisions out."""

from __future__ import annotations

import os
from pathlib import Path

import msgpack

from ipfs_kit_node.protocols.tasks import Result, Status, Task
from ipfs_kit_node.roles.journal import TaskJournal, final_record, submit_record
from ipfs_kit_node.roles.scheduler import MAX_ASSIGNMENTS, MAX_CAPACITY, Scheduler, State


def tasks(n: int, **kw: object) -> list[Task]:
    return [Task(f"t{i}", "noop", **kw) for i in range(n)]  # type: ignore[arg-type]


def ok(task: Task, worker: str) -> Result:
    return Result(task.task_id, worker, None, None, task.attempt)


def test_assigns_by_free_capacity_and_priority() -> None:
    s = Scheduler()
    s.join("a", 2, (), 0.0)
    s.join("b", 1, (), 0.0)
    for t in tasks(4):
        s.submit(t, "local", 0.0)
    s.submit(Task("urgent", "noop", priority=9), "local", 0.0)
    out = s.assign(0.0)
    assert sum(len(v) for v in out.values()) == 3  # capacity 2 + 1
    assert len(out["a"]) == 2 and len(out["b"]) == 1
    assert "urgent" in [t.task_id for v in out.values() for t in v]
    assert s.assign(0.0) == {}  # everyone full
    first = out["b"][0]
    assert s.complete(ok(first, "b"), 1.0) is not None
    assert [t.task_id for t in s.assign(1.0)["b"]] == ["t2"]  # the freed slot, next in line


def test_only_workers_with_the_handler_get_it() -> None:
    s = Scheduler()
    s.join("a", 4, ("sha256",), 0.0)
    s.submit(Task("x", "concat"), "local", 0.0)
    s.submit(Task("y", "sha256"), "local", 0.0)
    assert [t.task_id for t in s.assign(0.0)["a"]] == ["y"]
    s.join("b", 4, ("concat",), 0.0)
    assert [t.task_id for t in s.assign(0.0)["b"]] == ["x"]


def test_one_outcome_per_task_even_when_reassigned() -> None:
    s = Scheduler(heartbeat_timeout=5.0)
    s.join("a", 1, (), 0.0)
    s.submit(Task("t", "noop"), "local", 0.0)
    first = s.assign(0.0)["a"][0]
    assert s.leave("a", 1.0) == (["t"], [])  # its stream closed: back to the queue
    s.join("b", 1, (), 1.0)
    second = s.assign(1.0)["b"][0]
    assert second.attempt == 2
    assert s.complete(ok(first, "a"), 2.0) is not None  # the late first result wins
    assert s.tasks["t"].state is State.DONE and s.tasks["t"].worker == "a"
    assert s.complete(ok(second, "b"), 3.0) is None  # a duplicate: dropped
    assert s.workers["b"].free == 1


def test_failures_are_retried_then_fail() -> None:
    s = Scheduler(retries=1)
    s.join("a", 1, (), 0.0)
    s.submit(Task("t", "noop"), "local", 0.0)
    t1 = s.assign(0.0)["a"][0]
    assert s.complete(Result("t", "a", error="boom", attempt=t1.attempt), 1.0) is None
    t2 = s.assign(1.0)["a"][0]
    record = s.complete(Result("t", "a", error="boom again", attempt=t2.attempt), 2.0)
    assert record is not None and record.state is State.FAILED
    assert record.error == "boom again" and record.attempts == 2
    # A stale failure of an old attempt changes nothing.
    assert s.complete(Result("t", "a", error="late", attempt=1), 3.0) is None


def test_silent_workers_and_lapsed_leases_requeue_deadlines_fail() -> None:
    s = Scheduler(lease=10.0, heartbeat_timeout=3.0)
    s.join("a", 2, (), 0.0)
    s.submit(Task("t", "noop"), "local", 0.0)
    s.submit(Task("d", "noop", deadline=5.0), "local", 0.0)
    s.assign(0.0)
    s.heartbeat(Status("a", "worker", 2, 2), 2.0)  # alive: leases renewed
    assert s.expire(4.0) == ([], [])
    failed, requeued = s.expire(6.0)  # silent for 4 s > 3 s; and d's deadline has passed
    assert requeued == ["d", "t"]  # the silent worker's tasks, before d's deadline is seen
    assert [r.task.task_id for r in failed] == ["d"] and failed[0].error == "deadline exceeded"
    assert s.tasks["t"].state is State.QUEUED
    assert s.assign(6.0) == {}  # a is not alive any more
    s.heartbeat(Status("a", "worker", 2, 0), 7.0)
    assert [t.task_id for t in s.assign(7.0)["a"]] == ["t"]


def test_a_task_that_keeps_vanishing_workers_is_failed() -> None:
    s = Scheduler(lease=1.0, heartbeat_timeout=100.0)
    s.join("a", 1, (), 0.0)
    s.submit(Task("poison", "noop"), "local", 0.0)
    now = 0.0
    for _ in range(MAX_ASSIGNMENTS):
        assert s.assign(now)
        now += 2.0
        s.heartbeat(Status("a", "worker", 1, 0), now - 1.5)
        failed, _ = s.expire(now)
    assert [r.task.task_id for r in failed] == ["poison"]


def test_resubmitting_an_id_does_not_run_it_twice() -> None:
    s = Scheduler()
    record, new = s.submit(Task("t", "noop"), "local", 0.0)
    again, new_again = s.submit(Task("t", "sha256"), "local", 1.0)
    assert new and not new_again and again is record


def test_cancel_tells_the_worker() -> None:
    s = Scheduler()
    s.join("a", 1, (), 0.0)
    s.submit(Task("t", "noop"), "local", 0.0)
    s.submit(Task("q", "noop"), "local", 0.0)
    s.assign(0.0)
    record, worker = s.cancel("t", 1.0)
    assert record is not None and record.state is State.CANCELLED and worker == "a"
    record, worker = s.cancel("q", 1.0)
    assert record is not None and worker is None
    assert s.cancel("t", 2.0) == (None, None)
    assert s.assign(2.0) == {}  # the cancelled queued task never runs


def test_journal_replays_and_cuts_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "tasks" / "journal"
    journal = TaskJournal(path)
    assert journal.open() == []
    s = Scheduler()
    s.join("a", 5, (), 0.0)
    records = [s.submit(t, "local", 1.0)[0] for t in tasks(5, inputs=())]
    journal.append([submit_record(r) for r in records])
    done = s.complete(ok(s.assign(1.0)["a"][0], "a"), 2.0)
    assert done is not None
    journal.append([final_record(done)])
    journal.close()
    with open(path, "ab") as f:  # kill -9 in the middle of a write
        f.write(msgpack.packb(submit_record(records[0]))[:7])
    again = TaskJournal(path)
    replayed = {r.task.task_id: r for r in again.open()}
    assert set(replayed) == {"t0", "t1", "t2", "t3", "t4"}
    assert replayed[done.task.task_id].state is State.DONE
    assert sum(r.final for r in replayed.values()) == 1
    again.append([submit_record(records[0])])  # appends land after the cut
    again.close()
    assert len(TaskJournal(path).open()) == 5


def test_journal_keeps_the_newest_outcomes(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    s = Scheduler()
    s.join("a", 100, (), 0.0)
    journal = TaskJournal(path, keep_finished=3)
    journal.open()
    for i, t in enumerate(tasks(6)):
        s.submit(t, "local", float(i))
    journal.append([submit_record(r) for r in s.tasks.values()])
    for i, t in enumerate(s.assign(1.0)["a"]):
        record = s.complete(ok(t, "a"), 10.0 + i)
        assert record is not None
        journal.append([final_record(record)])
    journal.close()
    kept = TaskJournal(path, keep_finished=3).open()
    assert sorted(r.task.task_id for r in kept) == ["t3", "t4", "t5"]
    assert os.path.getsize(path) > 0


def test_handlers_offered_by_known_workers() -> None:
    s = Scheduler()
    assert s.handlers_offered() is None  # no worker yet: cannot tell, accept
    s.join("a", 1, ("sha256",), 0.0)
    s.join("b", 1, ("concat", "noop"), 0.0)
    assert s.handlers_offered() == {"sha256", "concat", "noop"}


def test_months_of_tasks_stay_bounded_in_memory_and_on_disk(tmp_path: Path) -> None:
    s = Scheduler()
    s.join("a", 100, (), 0.0)
    journal = TaskJournal(tmp_path / "journal", keep_finished=2)
    journal.open()
    for t in tasks(5):
        record, _ = s.submit(t, "local", 0.0)
        journal.append([submit_record(record)])
    s.submit(Task("open", "noop"), "local", 0.0)
    for t in s.assign(1.0)["a"][:5]:
        done = s.complete(ok(t, "a"), 2.0)
        if done is not None:
            journal.append([final_record(done)])
    assert journal.appended == 10
    assert s.forget_finished(2) == 3 and len(s.tasks) == 3
    kept = journal.compact(list(s.tasks.values()))
    assert journal.appended == 0 and len(kept) == 3
    journal.close()
    assert len(TaskJournal(tmp_path / "journal").open()) == 3


def test_workers_long_gone_are_forgotten() -> None:
    s = Scheduler()
    s.join("a", 1, (), 0.0)
    s.join("b", 1, (), 0.0)
    s.leave("a", 1.0)
    assert s.prune_workers(100.0, 3600.0) == []
    assert s.prune_workers(4000.0, 3600.0) == ["a"]  # b's stream is still open
    assert set(s.workers) == {"b"}


def test_only_a_worker_given_the_task_can_finish_it() -> None:
    s = Scheduler()
    s.join("a", 1, (), 0.0)
    s.submit(Task("t", "noop"), "local", 0.0)
    (task,) = s.assign(0.0)["a"]
    cid = "bafkreie5nqv6kd3qnfjupgvz34woh3oksc3iau6abmyajn7qvtf6d2ho34"
    forged = Result("t", "mallory", output=cid)
    assert s.complete(forged, 1.0) is None and s.tasks["t"].state is State.ASSIGNED
    assert s.complete(ok(task, "a"), 1.0) is not None


def test_a_task_that_kills_every_worker_is_failed_and_capacity_is_capped() -> None:
    s = Scheduler()
    s.submit(Task("poison", "noop"), "local", 0.0)
    failed = []
    for n in range(MAX_ASSIGNMENTS):
        s.join(f"w{n}", 10**9, (), float(n))
        assert s.workers[f"w{n}"].capacity == MAX_CAPACITY
        assert s.assign(float(n))
        failed += s.leave(f"w{n}", float(n))[1]  # the worker died running it
    assert [r.task.task_id for r in failed] == ["poison"]
    assert s.tasks["poison"].state is State.FAILED


def test_a_reconnecting_worker_gets_its_tasks_requeued() -> None:
    s = Scheduler()
    s.join("a", 2, (), 0.0)
    s.submit(Task("t", "noop"), "local", 0.0)
    (first,) = s.assign(0.0)["a"]
    assert s.join("a", 2, (), 1.0) == (["t"], [])  # a restarted worker forgot it
    (second,) = s.assign(1.0)["a"]
    assert second.attempt == 2
    assert s.complete(ok(first, "a"), 2.0) is not None  # a live one's late result still counts


def test_submissions_are_bounded_in_size() -> None:
    import pytest

    from ipfs_kit_node.roles.mesh import TaskError
    from ipfs_kit_node.roles.submission import parse_submission

    ok_task = parse_submission({"handler": "noop", "params": {"x": "y" * 8000}}, "me", (), 0.0)
    assert ok_task.handler == "noop"
    with pytest.raises(TaskError, match=r"values up to 8192"):
        parse_submission({"handler": "noop", "params": {"x": "y" * 9000}}, "me", (), 0.0)
    with pytest.raises(TaskError, match="limit 65536"):
        parse_submission({"handler": "noop", "params": {f"k{i}": "y" * 8000 for i in range(9)}},
                         "me", (), 0.0)
    with pytest.raises(TaskError, match="out of range"):
        parse_submission({"handler": "noop", "priority": 2**60}, "me", (), 0.0)


def test_a_worker_that_runs_none_of_its_tasks_is_hoarding() -> None:
    """Heartbeats renew as many leases as the worker says it runs: one that takes tasks and
    reports running none lets them lapse, and is named for its session to be closed."""
    s = Scheduler(lease=10.0, heartbeat_timeout=5.0)
    s.join("real", 2, (), 0.0)
    s.join("hoarder", 4, (), 0.0)
    for task in tasks(6):
        s.submit(task, "local", 0.0)
    given = s.assign(0.0)
    assert len(given["real"]) == 2 and len(given["hoarder"]) == 4
    for now in (4.0, 8.0, 12.0):
        s.heartbeat(Status("real", "worker", 2, 2), now)
        s.heartbeat(Status("hoarder", "worker", 4, 0), now)
        assert s.hoarding(now) == ([] if now < 10.0 else ["hoarder"])
    failed, requeued = s.expire(12.0)
    assert not failed and sorted(requeued) == sorted(t.task_id for t in given["hoarder"])
    assert all(s.tasks[t.task_id].state is State.ASSIGNED for t in given["real"])
