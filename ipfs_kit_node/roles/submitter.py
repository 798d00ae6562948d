"""Submitting from a worker or leecher: tasks are forwarded to a master over the task stream,
and this node keeps what it learns of them (accepted, then one final outcome each)."""

from __future__ import annotations

import itertools
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import trio
from libp2p.peer.id import ID

from ..logs import get_logger
from ..protocols.tasks import Result, Task
from ..protocols.tasks.frames import (
    MAX_BATCH,
    Accepted,
    Cancel,
    Frame,
    Query,
    Results,
    States,
    Submit,
    TaskInfo,
    batches,
)
from .mesh import MasterLink, StatusBoard, TaskError, UnknownTaskError
from .scheduler import FINAL, State

log = get_logger(__name__)

ANSWER_TIMEOUT = 30.0
KEEP_FINISHED = 100_000


@dataclass
class _Known:
    info: TaskInfo
    master: ID
    done: trio.Event = field(default_factory=trio.Event)


class RemoteTasks:
    """The TaskBackend of a node that is not a master."""

    def __init__(self, link: MasterLink, board: StatusBoard, stale_after: float) -> None:
        self.link = link
        self.board = board
        self.stale_after = stale_after
        self.known: dict[str, _Known] = {}
        self._done_order: deque[str] = deque()  # finished IDs, oldest first, to forget
        self._req = itertools.count(1)
        self._answers: dict[int, tuple[trio.Event, list[Frame]]] = {}
        link.on_open.append(self._reconcile)

    # -- frames from a master ----------------------------------------------------------------

    async def on_frame(self, master: ID, frame: Frame) -> bool:
        """Handles the submitter's frames; False for frames that are not its business."""
        if isinstance(frame, Accepted | States):
            waiting = self._answers.get(frame.req)
            if waiting is not None:
                waiting[1].append(frame)
                waiting[0].set()
            if isinstance(frame, States):
                for info in frame.states:
                    self._update(info)
            return True
        if isinstance(frame, Results):
            for result in frame.results:
                self.outcome(result)
            return True
        return False

    def outcome(self, result: Result) -> None:
        known = self.known.get(result.task_id)
        if known is None:
            return
        state = State.DONE if result.error is None else (
            State.CANCELLED if result.error == "cancelled" else State.FAILED)
        self._update(TaskInfo(result.task_id, state.value, known.info.handler, result.worker,
                              result.output, result.error, result.attempt))

    def _update(self, info: TaskInfo) -> None:
        known = self.known.get(info.task_id)
        if known is None or known.done.is_set():
            return
        known.info = info
        if info.state in FINAL:
            known.done.set()
            self._done_order.append(info.task_id)
            while len(self._done_order) > KEEP_FINISHED:  # a leecher runs for months too
                self.known.pop(self._done_order.popleft(), None)

    async def _reconcile(self, master: ID) -> None:
        """After a (re)connect: ask after tasks whose outcome we may have missed."""
        open_ids = [i for i, k in self.known.items() if k.master == master
                    and not k.done.is_set()]
        for start in range(0, len(open_ids), MAX_BATCH):
            await self.link.send(master, Query(next(self._req),
                                               tuple(open_ids[start:start + MAX_BATCH])))

    # -- the backend -------------------------------------------------------------------------

    async def _ask(self, frame: Submit | Query) -> Frame:
        channel = self.link.primary()
        event: trio.Event = trio.Event()
        box: list[Frame] = []
        self._answers[frame.req] = (event, box)
        try:
            await channel.send(frame)
            with trio.move_on_after(ANSWER_TIMEOUT):
                await event.wait()
        except Exception as exc:
            raise TaskError(f"the master's session broke: {exc}; try again") from None
        finally:
            del self._answers[frame.req]
        if not box:
            raise TaskError(f"the master did not answer within {ANSWER_TIMEOUT:.0f} s")
        return box[0]

    async def submit(self, tasks: list[Task], *, waiting: bool = False
                     ) -> tuple[list[str], list[tuple[str, str]]]:
        accepted: list[str] = []
        refused: list[tuple[str, str]] = []
        master = self.link.primary().peer
        for batch in batches(tasks):
            for task in batch:
                self.known.setdefault(task.task_id, _Known(
                    TaskInfo(task.task_id, "submitting", task.handler), master))
            answer = await self._ask(Submit(next(self._req), tuple(batch)))
            if not isinstance(answer, Accepted):
                raise TaskError(f"the master answered a submission with {type(answer).__name__}")
            accepted += answer.ids
            refused += answer.refused
            for task_id in answer.ids:
                known = self.known.get(task_id)
                if known is not None and known.info.state == "submitting":
                    known.info = TaskInfo(task_id, State.QUEUED.value, known.info.handler)
            for task_id, _ in answer.refused:
                self.known.pop(task_id, None)
        return accepted, refused

    async def info(self, task_id: str) -> TaskInfo:
        try:
            answer = await self._ask(Query(next(self._req), (task_id,)))
            if isinstance(answer, States) and answer.states:
                return answer.states[0]
        except TaskError:
            if task_id not in self.known:
                raise
        known = self.known.get(task_id)
        if known is None:
            raise UnknownTaskError(f"no task {task_id} on the master")
        return known.info

    def list_tasks(self, state: str | None) -> list[TaskInfo]:
        return [k.info for k in self.known.values() if state is None or k.info.state == state]

    def stats(self) -> dict[str, int]:
        return dict(Counter(k.info.state for k in self.known.values()))

    async def wait(self, task_id: str, timeout: float) -> TaskInfo:
        known = self.known.get(task_id)
        if known is None:
            info = await self.info(task_id)  # submitted elsewhere: follow it from here
            known = self.known[task_id] = _Known(info, self.link.primary().peer)
            if info.state in FINAL:
                known.done.set()
        with trio.move_on_after(timeout):
            while not known.done.is_set():
                with trio.move_on_after(2.0):  # the outcome may have been missed: ask
                    await known.done.wait()
                if not known.done.is_set():
                    self._update(await self.info(task_id))
        return known.info

    async def cancel(self, task_id: str) -> TaskInfo:
        await self.link.primary().send(Cancel((task_id,)))
        with trio.move_on_after(2.0):
            await self.wait(task_id, 2.0)
        return await self.info(task_id)

    def workers(self) -> list[dict[str, Any]]:
        return self.board.workers(time.time(), self.stale_after)

    def cluster_state(self) -> dict[str, Any]:
        raise TaskError("the cluster state is kept by the master; run this on a master")
