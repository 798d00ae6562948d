"""Task submissions as the API receives them: JSON documents checked like tasks from the wire.

The routes themselves live in api/routes/tasks.py, over each role's TaskBackend.
"""

from __future__ import annotations

from typing import Any

from ..protocols.tasks import EnvelopeError, Task, encode
from ..protocols.tasks.codec import check_body
from ..protocols.tasks.frames import TaskInfo
from .mesh import TaskError, new_task_id

MAX_TASK_BYTES = 64 * 1024
SUBMIT_FIELDS = {"task_id", "handler", "inputs", "params", "priority", "timeout"}


def info_json(info: TaskInfo) -> dict[str, Any]:
    return {"ID": info.task_id, "State": info.state, "Handler": info.handler,
            "Worker": info.worker, "Output": info.output, "Error": info.error,
            "Attempts": info.attempts}


def parse_submission(doc: Any, submitter: str, origins: tuple[str, ...], now: float) -> Task:
    """One task from the API's JSON, checked like a task from the wire."""
    if not isinstance(doc, dict) or set(doc) - SUBMIT_FIELDS:
        raise TaskError(f"a task is a JSON object with fields {sorted(SUBMIT_FIELDS)}")
    fields = dict(doc)
    timeout = fields.pop("timeout", None)
    if timeout is not None and (not isinstance(timeout, int | float) or timeout <= 0):
        raise TaskError(f"timeout must be a number of seconds > 0, got {timeout!r}")
    fields.setdefault("task_id", new_task_id())
    fields["submitter"] = submitter
    fields["origins"] = list(origins) if fields.get("inputs") else []
    if timeout is not None:
        fields["deadline"] = now + float(timeout)
    try:
        task = check_body(Task, fields)
    except EnvelopeError as exc:
        raise TaskError(str(exc)) from None
    assert isinstance(task, Task)
    if not task.handler:
        raise TaskError("a task must name a handler")
    size = len(encode(task))
    if size > MAX_TASK_BYTES:
        raise TaskError(f"task of {size} bytes (limit {MAX_TASK_BYTES}): pass big data as a "
                        "CID in inputs, not in params")
    return task
