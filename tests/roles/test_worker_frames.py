"""The worker's handling of the master's frames, on a WorkerRole without a host (its
__init__ needs one): the real frame handling and task runs (the built-in ``noop``), with the
results it sends (at once, or through the sender's outbox) read directly instead of a
stream."""

from __future__ import annotations

import trio
from libp2p.peer.id import ID

from ipfs_kit_node.logs import get_logger
from ipfs_kit_node.protocols.tasks import Result, Task
from ipfs_kit_node.protocols.tasks.frames import Assign, Cancel, Frame, Results
from ipfs_kit_node.roles.handlers import load_handlers
from ipfs_kit_node.roles.worker import WorkerRole

MASTER = ID(b"master-peer")
ME = "worker-peer"


class _Link:
    """Records what the worker sends to its master (the session's place)."""

    def __init__(self) -> None:
        self.frames: list[Frame] = []

    async def send(self, master: ID, *frames: Frame) -> bool:
        self.frames += frames
        return True


def bare_worker(nursery: trio.Nursery) -> WorkerRole:
    w = object.__new__(WorkerRole)
    w.me, w.log, w.nursery = ME, get_logger(__name__), nursery
    w.handlers = load_handlers()
    w.limit, w.limiter = 4, trio.CapacityLimiter(4)
    w.running, w.unacked, w.outbox = {}, {}, {}
    w._flush, w._sending = trio.Event(), False
    w.link = _Link()  # type: ignore[assignment]
    w.blocks = None  # type: ignore[assignment]  # noop reads no blocks
    return w


def sent(w: WorkerRole) -> list[tuple[str, str | None, int]]:
    frames = w.link.frames  # type: ignore[attr-defined]
    results = [r for f in frames if isinstance(f, Results) for r in f.results]
    return [(r.task_id, r.error, r.attempt) for r in results + w.outbox.get(MASTER, [])]


async def settle(w: WorkerRole) -> None:
    with trio.fail_after(10):
        while w.running:
            await trio.sleep(0.01)


async def test_a_failure_kept_unacked_is_not_replayed_as_a_new_attempt() -> None:
    """Assigned again while it still holds the task's failure (its ack not arrived): the
    worker runs the task instead of sending the failure as the new attempt; a success kept
    is still sent again (its output exists) without running the task."""
    async with trio.open_nursery() as nursery:
        w = bare_worker(nursery)
        w.unacked["bad"] = (MASTER, Result("bad", ME, None, "boom", 1))
        w.unacked["ok"] = (MASTER, Result("ok", ME, "bafyout", None, 1))
        await w.on_frame(MASTER, Assign((Task("bad", "noop", attempt=2),
                                         Task("ok", "noop", attempt=2))))
        assert set(w.running) == {"bad"}
        await settle(w)
        assert sorted(sent(w)) == [("bad", None, 2), ("ok", None, 2)]
        assert w.unacked["ok"][1].output == "bafyout"


async def test_cancel_then_assign_of_the_same_id_runs_the_new_attempt() -> None:
    """A Cancel (the submission withdrawn) right before an Assign of the same ID (submitted
    again): the new attempt runs, and the cancelled run reports nothing (its "cancelled"
    would have been counted against the new attempt)."""
    async with trio.open_nursery() as nursery:
        w = bare_worker(nursery)
        await w.on_frame(MASTER, Assign((Task("t1", "noop", params={"ms": 5000}, attempt=1),)))
        await trio.sleep(0.05)
        first = w.running["t1"]
        await w.on_frame(MASTER, Cancel(("t1",)))
        await w.on_frame(MASTER, Assign((Task("t1", "noop", attempt=1),)))
        assert w.running["t1"] is not first
        await settle(w)
        assert sent(w) == [("t1", None, 1)]


async def test_a_result_goes_out_at_once_and_others_wait_for_one_batch() -> None:
    """A result is sent by its task as soon as it is done when it is the only one (no hop
    through the sender task); results done while that write is under way, or while other
    tasks run, go together in the sender's next frame."""
    async with trio.open_nursery() as nursery:
        w = bare_worker(nursery)
        link: _Link = w.link  # type: ignore[assignment]
        gate, real_send = trio.Event(), link.send

        async def slow_send(master: ID, *frames: Frame) -> bool:
            await gate.wait()  # the master's window is full for a moment
            return await real_send(master, *frames)

        link.send = slow_send  # type: ignore[method-assign]
        nursery.start_soon(w._sender)
        await w.on_frame(MASTER, Assign((Task("first", "noop", attempt=1),)))
        await settle(w)
        await w.on_frame(MASTER, Assign((Task("a", "noop", attempt=1),
                                         Task("b", "noop", attempt=1))))
        await settle(w)
        assert sorted(r.task_id for r in w.outbox[MASTER]) == ["a", "b"]
        gate.set()
        with trio.fail_after(10):
            while len(link.frames) < 2 or w.outbox:
                await trio.sleep(0.01)
        assert [sorted(r.task_id for r in f.results) for f in link.frames  # type: ignore[union-attr]
                ] == [["first"], ["a", "b"]]
        assert set(w.unacked) == {"first", "a", "b"}  # kept until the master acknowledges
        # Two running at once, no write under way: still one frame (a burst is batched).
        await w.on_frame(MASTER, Assign((Task("c", "noop", attempt=1),
                                         Task("d", "noop", attempt=1))))
        await settle(w)
        with trio.fail_after(10):
            while len(link.frames) < 3 or w.outbox:
                await trio.sleep(0.01)
        await trio.sleep(0.1)
        assert [sorted(r.task_id for r in f.results) for f in link.frames[2:]  # type: ignore[union-attr]
                ] == [["c", "d"]]
        nursery.cancel_scope.cancel()
