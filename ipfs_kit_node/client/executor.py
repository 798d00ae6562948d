"""``TaskExecutor``: concurrent.futures semantics over the task mesh.

``submit(handler, input=CID)`` names a handler the workers run (never code: nothing is pickled,
a task carries a handler name, input CIDs and JSON params). Submissions made while one is in
flight go together in the next ``task/submit`` (``map`` sends all its tasks in one), and a few
waiter threads long-poll ``task/wait``; each future resolves exactly once, with the output CID,
or its bytes/text/JSON (``result=``), or TaskFailedError carrying the task's error.
``future.cancel()`` cancels the task on the master.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future
from typing import TYPE_CHECKING, Any

from ..errors import IpfsKitError, TaskFailedError
from ._wire import task_doc
from .types import TaskInfo

if TYPE_CHECKING:
    from ._sync import Client

RESULT_KINDS = ("cid", "bytes", "text", "json")
WAIT_SLICE = 10.0  # seconds one task/wait long-polls before the waiter moves on
MAX_BATCH = 1000  # tasks per task/submit


class TaskFuture(Future[Any]):
    """A task's outcome; ``task_id`` once submitted; ``cancel()`` cancels it on the master."""

    def __init__(self, executor: TaskExecutor, doc: dict[str, Any], kind: str) -> None:
        super().__init__()
        self.executor = executor
        self.doc = doc
        self.kind = kind
        self.task_id: str | None = None
        self.submitted = threading.Event()

    def cancel(self) -> bool:
        if self.done():
            return False
        if self.task_id is not None:
            info = self.executor.client.task.cancel(self.task_id)
            if info.state != "cancelled":
                return False
        # A waiter thread that saw the task's outcome ("cancelled") may settle it first.
        return self.executor._settle(self, "cancel") or self.cancelled()


class TaskExecutor(Executor):
    """Submit tasks to the mesh through ``client`` (a node whose master runs them).

    Args:
        result: what a future's result is by default: ``"cid"`` (the output CID), ``"bytes"``,
            ``"text"`` or ``"json"`` (the output file read back).
        waiters: threads long-polling outcomes (each holds one kept-alive connection).
    """

    def __init__(self, client: Client, *, result: str = "cid", waiters: int = 4) -> None:
        if result not in RESULT_KINDS:
            raise ValueError(f"result must be one of {RESULT_KINDS}")
        self.client = client
        self.result_kind = result
        self._lock = threading.Lock()
        self._to_submit: list[TaskFuture] = []
        self._wake = threading.Condition(self._lock)
        self._pending: queue.Queue[TaskFuture | None] = queue.Queue()
        self._closed = False
        self._threads = [threading.Thread(target=self._submitter, name="ikn-submit",
                                          daemon=True)]
        self._threads += [threading.Thread(target=self._waiter, name=f"ikn-wait-{i}",
                                           daemon=True) for i in range(max(1, waiters))]
        for thread in self._threads:
            thread.start()

    # -- Executor ----------------------------------------------------------------------------

    def submit(self, handler: str, /, *args: Any, input: str | None = None,  # type: ignore[override]
               inputs: Sequence[str] = (), params: Mapping[str, Any] | None = None,
               priority: int = 0, timeout: float | None = None, result: str | None = None,
               **kwargs: Any) -> TaskFuture:
        """Queue one task: ``handler`` on ``input``/``inputs`` (CIDs) with JSON ``params``."""
        if args or kwargs:
            raise TypeError("tasks take CIDs (input=, inputs=) and JSON params=, not "
                            "Python arguments")
        kind = result or self.result_kind
        if kind not in RESULT_KINDS:
            raise ValueError(f"result must be one of {RESULT_KINDS}")
        cids = [input] if input is not None else list(inputs)
        doc = task_doc(handler, cids, params, priority, timeout)
        doc["task_id"] = uuid.uuid4().hex
        future = TaskFuture(self, doc, kind)
        with self._wake:
            if self._closed:
                raise RuntimeError("cannot submit after shutdown")
            self._to_submit.append(future)
            self._wake.notify()
        return future

    def map(self, handler: str, *iterables: Iterable[Any],  # type: ignore[override]
            timeout: float | None = None, chunksize: int = 1, params: Mapping[str, Any]
            | None = None, result: str | None = None) -> Iterator[Any]:
        """``handler`` over each item (a CID, or a list of CIDs when several iterables are
        given, zipped); results in order. All tasks go out before the first result is read."""
        deadline = None if timeout is None else time.monotonic() + timeout
        items = zip(*iterables, strict=False) if len(iterables) > 1 else iterables[0]
        futures = []
        for item in items:
            cids = list(item) if isinstance(item, tuple | list) else [item]
            futures.append(self.submit(handler, inputs=cids, params=params, result=result))

        def results() -> Iterator[Any]:
            try:
                for future in futures:
                    left = None if deadline is None else max(0.0, deadline - time.monotonic())
                    yield future.result(left)
            finally:
                for future in futures:
                    if not future.done():
                        future.cancel()

        return results()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._wake:
            self._closed = True
            dropped, self._to_submit = (self._to_submit, []) if cancel_futures else ([], [])
            self._wake.notify_all()
        for future in dropped:
            self._settle(future, "cancel")
        if wait:
            self._threads[0].join()
            while self._unfinished():
                time.sleep(0.05)
        for _ in self._threads[1:]:
            self._pending.put(None)

    def _unfinished(self) -> bool:
        return self._pending.unfinished_tasks > 0

    # -- threads -----------------------------------------------------------------------------

    def _settle(self, future: TaskFuture, outcome: str, value: Any = None) -> bool:
        """Resolve a future once (``result``, ``exception`` or ``cancel``), whichever thread
        gets there first."""
        with self._lock:
            if future.done():
                return False
            if outcome == "result":
                future.set_result(value)
            elif outcome == "exception":
                future.set_exception(value)
            else:
                Future.cancel(future)
            return True

    def _submitter(self) -> None:
        while True:
            with self._wake:
                while not self._to_submit and not self._closed:
                    self._wake.wait()
                if not self._to_submit and self._closed:
                    return
                batch, self._to_submit = self._to_submit[:MAX_BATCH], \
                    self._to_submit[MAX_BATCH:]
            try:
                answer = self.client.task.submit_many([f.doc for f in batch])
            except IpfsKitError as exc:
                for future in batch:
                    self._settle(future, "exception", exc)
                continue
            refused = dict(answer.refused)
            for future in batch:  # each task carries its own ID (made here): no guessing
                task_id = future.doc["task_id"]
                if task_id in refused:
                    self._settle(future, "exception",
                                 TaskFailedError(task_id, "refused", refused[task_id]))
                    continue
                future.task_id = task_id
                future.submitted.set()
                self._pending.put(future)

    def _waiter(self) -> None:
        while True:
            future = self._pending.get()
            if future is None:
                return
            try:
                if future.done() or future.task_id is None:
                    continue
                try:
                    info = self.client.task.wait(future.task_id, WAIT_SLICE)
                except IpfsKitError as exc:
                    self._settle(future, "exception", exc)
                    continue
                if not info.final:
                    self._pending.put(future)  # not yet: back of the line
                    continue
                self._resolve(future, info)
            finally:
                self._pending.task_done()

    def _resolve(self, future: TaskFuture, info: TaskInfo) -> None:
        if info.state == "cancelled":
            self._settle(future, "cancel")
            return
        if info.state != "done":
            error = TaskFailedError(info.id, info.state, info.error)
            self._settle(future, "exception", error)
            return
        try:
            value = self._value(future.kind, info.output)
        except IpfsKitError as exc:
            self._settle(future, "exception", exc)
            return
        self._settle(future, "result", value)

    def _value(self, kind: str, output: str | None) -> Any:
        if kind == "cid" or output is None:
            return output
        data = self.client.cat(output)
        if kind == "bytes":
            return data
        text = data.decode("utf-8")
        return text if kind == "text" else json.loads(text)
