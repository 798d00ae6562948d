"""The task-mesh envelope: round trips, and clear errors for anything else."""

from __future__ import annotations

import msgpack
import pytest

from ipfs_kit_node.protocols.tasks import EnvelopeError, Result, Status, Task, decode, encode

CID = "bafkreie5nqv6kd3qnfjupgvz34woh3oksc3iau6abmyajn7qvtf6d2ho34"


@pytest.mark.parametrize("body", [
    Task("t1", "sha256", inputs=(CID,), params={"n": 3, "name": "x", "fast": True, "r": 0.5},
         priority=5, deadline=1.5e9, submitter="12D3KooW..."),
    Result("t1", "12D3KooWworker", output=CID),
    Result("t1", "12D3KooWworker", error="handler failed: boom", attempt=2),
    Status("12D3KooWworker", "worker", capacity=4, running=1, cpu=12.5, memory=40.0,
           disk_free=10**9, sent_at=1.7e9),
])
def test_round_trip(body: object) -> None:
    assert decode(encode(body)) == body  # type: ignore[arg-type]


def raw(doc: object) -> bytes:
    return msgpack.packb(doc, use_bin_type=True)


@pytest.mark.parametrize(("data", "reason"), [
    (b"\xc1 not msgpack", "not msgpack"),
    (raw([1, 2, 3]), "not an envelope"),
    (raw({"v": 2, "kind": "task", "body": {}}), "version 2"),
    (raw({"v": 1, "kind": "exec", "body": {}}), "unknown message kind"),
    (raw({"v": 1, "kind": "task", "body": {"task_id": "t"}}), "missing fields"),
    (raw({"v": 1, "kind": "task", "body": {"task_id": "t", "handler": "h", "code": "x"}}),
     "unknown fields"),
    (raw({"v": 1, "kind": "task", "body": {"task_id": 5, "handler": "h"}}), "task.task_id"),
    (raw({"v": 1, "kind": "task", "body": {"task_id": "t", "handler": "h",
                                           "inputs": ["not-a-cid"]}}), "not a CID"),
    (raw({"v": 1, "kind": "task", "body": {"task_id": "t", "handler": "h",
                                           "params": {"x": [1, 2]}}}), "scalars"),
    (raw({"v": 1, "kind": "status", "body": {"peer": "p", "role": "w", "capacity": True,
                                             "running": 0}}), "status.capacity"),
    (b"\x00" * 300_000, "limit"),
])
def test_malformed_messages_are_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(EnvelopeError, match=reason):
        decode(data)


# -- the direct task stream ------------------------------------------------------------------

from ipfs_kit_node.protocols.tasks import ResultBatch, TaskBatch  # noqa: E402
from ipfs_kit_node.protocols.tasks.frames import (  # noqa: E402
    MAX_FRAME_BYTES,
    Accepted,
    Ack,
    Assign,
    Cancel,
    FrameReader,
    Hello,
    Query,
    Results,
    States,
    StatusFrame,
    Submit,
    TaskInfo,
    encode_frame,
)

TASK = Task("t1", "sha256", inputs=(CID,), origins=("/ip4/127.0.0.1/tcp/4001/p2p/12D3KooW",),
            attempt=2)
FRAMES = [
    Hello("worker", 4, ("sha256", "noop")),
    StatusFrame(Status("p", "worker", 4, 1, cpu=1.5)),
    Assign((TASK, Task("t2", "noop"))),
    Results((Result("t1", "w", output=CID), Result("t2", "w", error="boom", attempt=3))),
    Ack(("t1", "t2")), Cancel(("t1",)),
    Submit(7, (TASK,)), Accepted(7, ("t1",), (("t2", "not allowed"),)),
    Query(8, ("t1",)), States(8, (TaskInfo("t1", "done", "sha256", "w", CID, None, 1),)),
]


@pytest.mark.parametrize("frame", FRAMES, ids=lambda f: type(f).__name__)
def test_frames_round_trip(frame: object) -> None:
    assert FrameReader().feed(encode_frame(frame)) == [frame]  # type: ignore[arg-type]


def test_frames_arrive_whole_whatever_the_split() -> None:
    data = b"".join(encode_frame(f) for f in FRAMES)  # type: ignore[arg-type]
    reader, out = FrameReader(), []
    for i in range(0, len(data), 7):
        out += reader.feed(data[i:i + 7])
    assert out == FRAMES


def test_batches_on_the_topics_round_trip() -> None:
    assert decode(encode(TaskBatch((TASK,) * 3))) == TaskBatch((TASK,) * 3)
    batch = ResultBatch((Result("t1", "w", output=CID),))
    assert decode(encode(batch)) == batch


def frame_of(doc: object) -> bytes:
    body = msgpack.packb(doc, use_bin_type=True)
    return bytes([len(body)]) + body if len(body) < 128 else encode_frame(Ack(()))


@pytest.mark.parametrize(("data", "reason"), [
    (frame_of({"v": 1, "op": "exec", "code": "x"}), "unknown task frame op"),
    (frame_of({"v": 2, "op": "ack", "ids": []}), "not a version 1"),
    (frame_of({"v": 1, "op": "ack", "ids": [1]}), "list of strings"),
    (frame_of({"v": 1, "op": "ack", "ids": [], "x": 1}), "unknown fields"),
    (frame_of({"v": 1, "op": "assign", "tasks": [{"task_id": "t"}]}), "missing fields"),
    (frame_of({"v": 1, "op": "hello", "role": "w", "capacity": "many"}), "hello.capacity"),
    (frame_of({"v": 1, "op": "accepted", "req": 1, "ids": [], "refused": [["a"]]}), "pairs"),
    (b"\x05\xc1\xc1\xc1\xc1\xc1", "not msgpack"),
    (b"\xff\xff\xff\x7f", "limit"),  # a 256 MiB frame announced
    (b"\xff\xff\xff\xff\x01", "longer than 4 bytes"),
])
def test_malformed_frames_are_refused(data: bytes, reason: str) -> None:
    assert len(data) < MAX_FRAME_BYTES
    with pytest.raises(EnvelopeError, match=reason):
        FrameReader().feed(data)
