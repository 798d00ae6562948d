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
