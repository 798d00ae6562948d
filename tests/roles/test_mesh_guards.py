"""The mesh's guards without daemons: JSON nesting, the loop guard, bounded peer-fed maps, and
the send queue that keeps one slow peer from holding anyone else."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import trio
import trio.testing

from ipfs_kit_node.errors import JsonInputError, PeerBrokenError
from ipfs_kit_node.jsonsafe import depth, loads
from ipfs_kit_node.logs import get_logger
from ipfs_kit_node.protocols.tasks import Status
from ipfs_kit_node.protocols.tasks.channel import SendQueue, TaskChannel
from ipfs_kit_node.protocols.tasks.frames import Ack, FrameReader
from ipfs_kit_node.roles.mesh import StatusBoard, forever
from ipfs_kit_node.roles.scheduler import MAX_GOSSIP_WORKERS, Scheduler


def status(peer: str, role: str = "worker") -> Status:
    return Status(peer=peer, role=role, capacity=4, running=0, cpu=0.0, memory=0.0,
                  disk_free=0, sent_at=0.0)


# -- JSON ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("{}", 1), ("[]", 1), ("1", 0), ('"[[["', 0), ('{"a": [1, {"b": []}]}', 4),
    ('["\\"]]]", [["x"]]]', 3), ('["\\\\", [1]]', 2), ('"unterminated [[[', 0),
])
def test_depth_ignores_brackets_in_strings(text: str, expected: int) -> None:
    assert depth(text) == expected
    assert depth(text.encode()) == expected


def test_deep_json_is_a_clear_error_not_recursion() -> None:
    for body in (b"[" * 200_000, b'{"a":' * 100_000, b"[" * 65 + b"]" * 65):
        with pytest.raises(JsonInputError, match="nests JSON"):
            loads(body)
    assert loads(b"[" * 64 + b"]" * 64) is not None
    with pytest.raises(JsonInputError, match="not JSON"):
        loads(b"{nope")
    with pytest.raises(JsonInputError, match="not JSON"):
        loads(b"\xff\xfe")
    assert JsonInputError("x").http_status == 400


def test_a_wide_body_is_cheap_to_check() -> None:
    body = json.dumps({"tasks": [{"handler": "noop", "params": {"s": "[" * 50}}] * 10_000})
    started = time.perf_counter()
    assert depth(body) == 4
    took = time.perf_counter() - started
    print(f"depth of a {len(body)}-byte body: {took * 1000:.1f} ms")  # measured, not asserted


def test_depth_stops_past_the_limit_and_matches_a_parse() -> None:
    """Exact for JSON (checked against a walk of the parsed document, escapes and brackets
    in strings and keys included); with a limit it stops once past it."""
    docs = [{"a": [1, {"b\\": ["]\\\"[", {}]}], "[": "{"}, [[], [[]], "\\"], "\"[[\"",
            [[[[[]]]], [[[]]], [], {"k": [[[[[[]]]]]]}]]
    for doc in docs:
        text = json.dumps(doc)

        def walk(v: Any) -> int:
            if isinstance(v, dict):
                v = list(v.values())
            return 1 + max(map(walk, v), default=0) if isinstance(v, list) else 0

        assert depth(text) == walk(doc), text
    deep = b"[" * 10_000 + b"[]," * 100_000
    assert 64 < depth(deep, 64) <= 10_001
    assert depth(b"[" + b"[]," * 100_000 + b"[]]", 64) == 2


# -- the loop guard -------------------------------------------------------------------------------


async def test_a_failing_loop_is_restarted_and_cancellation_passes(
        autojump_clock: trio.testing.MockClock) -> None:
    calls: list[float] = []

    async def loop() -> None:
        calls.append(trio.current_time())
        if len(calls) == 1:
            raise OSError("no space left on device")
        if len(calls) == 2:
            raise trio.EndOfChannel  # a subscription that ended
        await trio.sleep_forever()

    with trio.move_on_after(60):
        await forever(get_logger("test"), "test loop", loop)
    assert len(calls) == 3  # failed, ended, running again until cancelled
    assert calls[1] - calls[0] >= 0.5 and calls[2] - calls[1] >= 1.0  # backoff doubles


# -- bounded maps -------------------------------------------------------------------------------


def test_gossip_heartbeats_respect_tasks_workers() -> None:
    s = Scheduler(allowed=frozenset({"listed"}))
    assert not s.heartbeat(status("rogue"), 0.0)
    assert "rogue" not in s.workers
    assert s.heartbeat(status("listed"), 0.0)
    assert not s.workers["listed"].connected  # known from gossip only: no tasks for it
    assert not s.may_work("rogue") and s.may_work("listed")
    assert Scheduler().may_work("anyone")


def test_gossip_only_workers_are_bounded() -> None:
    s = Scheduler()
    s.join("session", 2, (), 0.0)
    for i in range(MAX_GOSSIP_WORKERS + 50):
        s.heartbeat(status(f"p{i}"), 0.0)
    assert sum(not w.connected for w in s.workers.values()) == MAX_GOSSIP_WORKERS
    assert s.heartbeat(status("session"), 1.0)  # known workers still count
    assert s.prune_workers(7200.0, 3600.0)  # silent ones are forgotten, making room
    assert s.heartbeat(status("newcomer"), 7200.0)


def test_status_board_forgets_the_silent_and_is_bounded() -> None:
    board = StatusBoard(forget_after=100.0, limit=3)
    for i in range(5):
        board.note(status(f"p{i}"), float(i))
    assert list(board.seen) == ["p2", "p3", "p4"]  # the longest silent went first
    board.note(status("p2"), 10.0)  # noted again: now the freshest
    assert list(board.seen) == ["p3", "p4", "p2"]
    board.note(status("late"), 105.0)  # p3 (t=3) and p4 (t=4): over 100 s silent
    assert list(board.seen) == ["p2", "late"]


# -- the send queue -----------------------------------------------------------------------------


class _Stream:
    """An INetStream stand-in: ``accept`` bytes at a time, or none (a peer that stopped
    reading)."""

    def __init__(self, stalled: bool) -> None:
        self.stalled = stalled
        self.written = bytearray()
        self.reset_called = False
        self.muxed_conn: Any = type("Conn", (), {"peer_id": "peer"})()

    async def write(self, data: bytes) -> None:
        if self.stalled:
            await trio.sleep_forever()
        self.written += data

    async def reset(self) -> None:
        self.reset_called = True


async def test_send_queue_writes_in_order_and_never_blocks_the_poster(
        autojump_clock: trio.testing.MockClock) -> None:
    stream = _Stream(stalled=False)
    queue = SendQueue(TaskChannel(stream))  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(queue.run)
        for i in range(100):
            assert queue.post(Ack((f"t{i}",)))
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    frames = FrameReader().feed(bytes(stream.written))
    assert [f.ids[0] for f in frames] == [f"t{i}" for i in range(100)]  # type: ignore[union-attr]
    assert queue.queued == 0


async def test_a_peer_that_stops_reading_is_cut_off(
        autojump_clock: trio.testing.MockClock) -> None:
    stream = _Stream(stalled=True)
    channel = TaskChannel(stream)  # type: ignore[arg-type]
    queue = SendQueue(channel, max_bytes=64 * 1024, timeout=10.0)
    assert queue.post(Ack(("a",)))
    started = trio.current_time()
    with pytest.raises(PeerBrokenError, match="stopped reading"):
        await queue.run()
    assert trio.current_time() - started == pytest.approx(10.0)
    assert channel.closed and stream.reset_called
    assert not queue.post(Ack(("b",)))  # closed: nothing more is queued
    # Over its bound, a queue refuses at once, whatever the peer does.
    full = SendQueue(TaskChannel(_Stream(stalled=True)), max_bytes=100)  # type: ignore[arg-type]
    assert full.post(Ack(("x" * 40,)))
    assert not full.post(Ack(("y" * 80,)))
