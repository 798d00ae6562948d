"""Task-mesh messages: a versioned msgpack envelope, strictly checked. No I/O.

    {"v": 1, "kind": "task" | "result" | "status", "body": {...}}

Everything a peer sends is data, checked field by field: nothing is unpickled, evaluated or
looked up by name except through the handler allow-list the worker keeps. A message that is
not exactly this shape raises ``EnvelopeError`` with the reason, for a log line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgpack

from ...cid import to_cid
from ...errors import IpfsKitError

VERSION = 1
MAX_ENVELOPE_BYTES = 256 * 1024
MAX_INPUTS = 64
MAX_PARAMS = 64
MAX_ORIGINS = 16
MAX_NAME = 256  # task IDs, handler and peer names
MAX_STRING = 8192  # parameter values, error messages
MAX_INT = 2**53  # what every consumer (JSON, Arrow int64, JavaScript) holds exactly
ParamValue = str | int | float | bool | None


class EnvelopeError(IpfsKitError, ValueError):
    """A task-mesh message that is malformed, of another version, or over its limits."""


@dataclass(frozen=True)
class Task:
    task_id: str
    handler: str
    inputs: tuple[str, ...] = ()  # CIDs
    params: dict[str, ParamValue] = field(default_factory=dict)
    priority: int = 0
    deadline: float | None = None  # unix time
    submitter: str = ""  # peer ID
    attempt: int = 0  # set by the master when it assigns the task
    origins: tuple[str, ...] = ()  # multiaddrs of peers holding the inputs (Cluster's origins)


@dataclass(frozen=True)
class Result:
    task_id: str
    worker: str  # peer ID
    output: str | None = None  # CID
    error: str | None = None
    attempt: int = 1


@dataclass(frozen=True)
class Status:
    peer: str
    role: str
    capacity: int
    running: int
    cpu: float = 0.0  # percent
    memory: float = 0.0  # percent
    disk_free: int = 0  # bytes
    sent_at: float = 0.0


@dataclass(frozen=True)
class TaskBatch:
    """Tasks announced (master) or submitted (a listed submitter) in one message."""

    tasks: tuple[Task, ...]


@dataclass(frozen=True)
class ResultBatch:
    """Final outcomes the master publishes in one message."""

    results: tuple[Result, ...]


Body = Task | Result | Status
Message = Body | TaskBatch | ResultBatch
KINDS: dict[str, type[Body]] = {"task": Task, "result": Result, "status": Status}
KIND_OF: dict[type[Message], str] = {Task: "task", Result: "result", Status: "status",
                                     TaskBatch: "tasks", ResultBatch: "results"}
MAX_BATCH = 500


def encode(body: Message) -> bytes:
    if isinstance(body, TaskBatch):
        fields: Any = {"tasks": [body_dict(t) for t in body.tasks]}
    elif isinstance(body, ResultBatch):
        fields = {"results": [body_dict(r) for r in body.results]}
    else:
        fields = body_dict(body)
    data: bytes = msgpack.packb({"v": VERSION, "kind": KIND_OF[type(body)], "body": fields},
                                use_bin_type=True)
    if len(data) > MAX_ENVELOPE_BYTES:
        raise EnvelopeError(f"message of {len(data)} bytes (limit {MAX_ENVELOPE_BYTES})")
    return data


def body_dict(body: Body) -> dict[str, Any]:
    """Plain msgpack-ready fields (tuples as lists). Per message: no deep copy."""
    fields = dict(vars(body))
    if isinstance(body, Task):
        fields["inputs"] = list(body.inputs)
        fields["origins"] = list(body.origins)
    return fields


def decode(data: bytes) -> Message:
    if len(data) > MAX_ENVELOPE_BYTES:
        raise EnvelopeError(f"message of {len(data)} bytes (limit {MAX_ENVELOPE_BYTES})")
    try:
        doc = msgpack.unpackb(data, raw=False, strict_map_key=True,
                              max_array_len=MAX_BATCH, max_map_len=MAX_PARAMS * 2)
    except Exception as exc:
        raise EnvelopeError(f"not msgpack: {exc}") from None
    if not isinstance(doc, dict) or set(doc) != {"v", "kind", "body"}:
        raise EnvelopeError("not an envelope ({v, kind, body})")
    if doc["v"] != VERSION:
        raise EnvelopeError(f"envelope version {doc['v']!r}; this node speaks {VERSION}")
    kind = doc["kind"]
    body = doc["body"]
    if not isinstance(body, dict):
        raise EnvelopeError("body is not a map")
    if kind in ("tasks", "results"):
        items = body.get(kind)
        if set(body) != {kind} or not isinstance(items, list):
            raise EnvelopeError(f"{kind}: expected {{{kind}: [...]}}")
        if kind == "tasks":
            return TaskBatch(tuple(check_body(Task, i) for i in items))  # type: ignore[misc]
        return ResultBatch(tuple(check_body(Result, i) for i in items))  # type: ignore[misc]
    cls = KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise EnvelopeError(f"unknown message kind {kind!r}")
    return _check(cls, body)


_TYPES: dict[type[Body], dict[str, tuple[type, ...]]] = {
    Task: {"task_id": (str,), "handler": (str,), "inputs": (list,), "params": (dict,),
           "priority": (int,), "deadline": (float, int, type(None)), "submitter": (str,),
           "attempt": (int,), "origins": (list,)},
    Result: {"task_id": (str,), "worker": (str,), "output": (str, type(None)),
             "error": (str, type(None)), "attempt": (int,)},
    Status: {"peer": (str,), "role": (str,), "capacity": (int,), "running": (int,),
             "cpu": (float, int), "memory": (float, int), "disk_free": (int,),
             "sent_at": (float, int)},
}
_REQUIRED = {Task: {"task_id", "handler"}, Result: {"task_id", "worker"},
             Status: {"peer", "role", "capacity", "running"}}


def check_body(cls: type[Body], body: Any) -> Body:
    """One body (a map) checked field by field, for envelopes and stream frames alike."""
    if not isinstance(body, dict):
        raise EnvelopeError(f"{cls.__name__.lower()} is not a map")
    return _check(cls, body)


def _check(cls: type[Body], body: dict[str, Any]) -> Body:
    types = _TYPES[cls]
    unknown = set(body) - set(types)
    if unknown:
        raise EnvelopeError(f"{cls.__name__.lower()}: unknown fields {sorted(unknown)}")
    missing = _REQUIRED[cls] - set(body)
    if missing:
        raise EnvelopeError(f"{cls.__name__.lower()}: missing fields {sorted(missing)}")
    for name, value in body.items():
        wrong_bool = isinstance(value, bool) and bool not in types[name]
        if wrong_bool or not isinstance(value, types[name]):
            raise EnvelopeError(f"{cls.__name__.lower()}.{name}: unexpected {type(value).__name__}")
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
            raise EnvelopeError(f"{cls.__name__.lower()}.{name}: out of range")
        limit = MAX_STRING if name == "error" else MAX_NAME
        if isinstance(value, str) and len(value) > limit:
            raise EnvelopeError(f"{cls.__name__.lower()}.{name}: longer than {limit} characters")
    if cls is Task:
        inputs = body.get("inputs", [])
        if len(inputs) > MAX_INPUTS:
            raise EnvelopeError(f"task: more than {MAX_INPUTS} inputs")
        for cid in inputs:
            try:
                to_cid(cid)
            except Exception:
                raise EnvelopeError(f"task.inputs: {cid!r} is not a CID") from None
        params = body.get("params", {})
        if any(not isinstance(k, str) or not isinstance(v, ParamValue) for k, v in params.items()):
            raise EnvelopeError("task.params: keys must be strings, values scalars")
        if any(len(k) > MAX_NAME or (isinstance(v, str) and len(v) > MAX_STRING)
               for k, v in params.items()):
            raise EnvelopeError(f"task.params: names up to {MAX_NAME} characters, values up "
                                f"to {MAX_STRING}")
        origins = body.get("origins", [])
        if len(origins) > MAX_ORIGINS or not all(
                isinstance(o, str) and o.startswith("/") and len(o) < 512 for o in origins):
            raise EnvelopeError(f"task.origins: at most {MAX_ORIGINS} multiaddrs")
        body = {**body, "inputs": tuple(inputs), "origins": tuple(origins)}
    if cls is Result and body.get("output") is not None:
        try:
            to_cid(body["output"])
        except Exception:
            raise EnvelopeError(f"result.output: {body['output']!r} is not a CID") from None
    return cls(**body)
