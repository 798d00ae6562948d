"""Frames of the direct task stream ``/ipfs-kit/tasks/1.0.0``. No I/O.

gossipsub drops the tail of large bursts, so everything that must arrive travels on this
stream, which a worker or submitter opens to a master and keeps open::

    worker    -> master   hello{role, capacity, handlers}, then status{status} each beat
    master    -> worker   assign{tasks}            (each task carries its attempt number)
    worker    -> master   results{results}
    master    -> worker   ack{ids}                 (the results are journaled; forget them)
    master    -> worker   cancel{ids}
    submitter -> master   submit{req, tasks}
    master    -> submitter accepted{req, ids, refused}   (journaled before it is sent)
    master    -> submitter results{results}         (each task's one final outcome)
    submitter -> master   cancel{ids} | query{req, ids}
    master    -> submitter states{req, states}

Each frame is an unsigned-varint length, then a msgpack map ``{"v": 1, "op": ..., ...}``.
Batches hold at most ``MAX_BATCH`` items and a frame at most ``MAX_FRAME_BYTES``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, TypeVar

import msgpack

from ...codecs.framing import LengthPrefixedDecoder, frame
from .codec import MAX_STRING, VERSION, EnvelopeError, Result, Status, Task, body_dict, check_body

MAX_FRAME_BYTES = 4 * 1024 * 1024
FRAME_BUDGET = 1024 * 1024  # what a sender packs into one frame
MAX_BATCH = 1000
T = TypeVar("T", Task, Result)


@dataclass(frozen=True)
class Hello:
    role: str
    capacity: int
    handlers: tuple[str, ...] = ()


@dataclass(frozen=True)
class StatusFrame:
    """The heartbeat, also on the stream: the master's liveness view must not depend on
    gossip delivery."""

    status: Status


@dataclass(frozen=True)
class Assign:
    tasks: tuple[Task, ...]


@dataclass(frozen=True)
class Results:
    results: tuple[Result, ...]


@dataclass(frozen=True)
class Ack:
    ids: tuple[str, ...]


@dataclass(frozen=True)
class Cancel:
    ids: tuple[str, ...]


@dataclass(frozen=True)
class Submit:
    req: int
    tasks: tuple[Task, ...]


@dataclass(frozen=True)
class Accepted:
    req: int
    ids: tuple[str, ...]
    refused: tuple[tuple[str, str], ...] = ()  # (task ID, reason)


@dataclass(frozen=True)
class TaskInfo:
    """A task as the master sees it (answers to ``query``)."""

    task_id: str
    state: str
    handler: str = ""
    worker: str | None = None
    output: str | None = None
    error: str | None = None
    attempts: int = 0


@dataclass(frozen=True)
class Query:
    req: int
    ids: tuple[str, ...]


@dataclass(frozen=True)
class States:
    req: int
    states: tuple[TaskInfo, ...]


Frame = (Hello | StatusFrame | Assign | Results | Ack | Cancel | Submit | Accepted | Query
         | States)
OPS: dict[str, type[Frame]] = {
    "hello": Hello, "status": StatusFrame, "assign": Assign, "results": Results, "ack": Ack,
    "cancel": Cancel,    "submit": Submit, "accepted": Accepted, "query": Query, "states": States,
}
OP_OF = {cls: op for op, cls in OPS.items()}


def batches(items: list[T] | tuple[T, ...], *, budget: int = FRAME_BUDGET,
            max_items: int = MAX_BATCH) -> list[tuple[T, ...]]:
    """Split tasks or results into frames (or pubsub messages) of at most ``max_items`` items
    and about ``budget`` bytes (each item is at most a few tens of KiB: see the codec's
    limits)."""
    out: list[tuple[T, ...]] = []
    current: list[T] = []
    size = 0
    for item in items:
        item_size = _size_bound(item)
        if current and (len(current) >= max_items or size + item_size > budget):
            out.append(tuple(current))
            current, size = [], 0
        current.append(item)
        size += item_size
    if current:
        out.append(tuple(current))
    return out


def _size_bound(item: Task | Result) -> int:
    """At least its msgpack size, without encoding it (that happens once, in the frame):
    names and headers fit in 256 bytes, and strings count in full."""
    size = 256
    for value in vars(item).values():
        if isinstance(value, str):
            size += len(value.encode())
        elif isinstance(value, tuple):
            size += sum(len(v.encode()) + 5 for v in value)
        elif isinstance(value, dict):
            size += sum(len(k.encode()) + len(str(v).encode()) + 10 for k, v in value.items())
    return size


def encode_frame(message: Frame) -> bytes:
    doc: dict[str, Any] = {"v": VERSION, "op": OP_OF[type(message)]}
    for f in fields(message):
        value = getattr(message, f.name)
        if isinstance(value, Status):
            value = body_dict(value)
        if isinstance(value, tuple):
            value = [body_dict(v) if isinstance(v, Task | Result) else
                     asdict(v) if isinstance(v, TaskInfo) else
                     list(v) if isinstance(v, tuple) else v for v in value]
        doc[f.name] = value
    body: bytes = msgpack.packb(doc, use_bin_type=True)
    if len(body) > MAX_FRAME_BYTES:
        raise EnvelopeError(f"frame of {len(body)} bytes (limit {MAX_FRAME_BYTES})")
    return frame(body)


class FrameReader:
    """Bytes from the stream in, checked frames out; any malformed frame raises EnvelopeError."""

    def __init__(self) -> None:
        self._decoder = LengthPrefixedDecoder(MAX_FRAME_BYTES, EnvelopeError)

    def feed(self, data: bytes) -> list[Frame]:
        return [decode_frame(body) for body in self._decoder.feed(data)]


def decode_frame(body: bytes) -> Frame:
    try:
        doc = msgpack.unpackb(body, raw=False, strict_map_key=True, max_array_len=MAX_BATCH,
                              max_map_len=128, max_str_len=MAX_STRING * 4)  # UTF-8
    except Exception as exc:
        raise EnvelopeError(f"frame is not msgpack: {exc}") from None
    if not isinstance(doc, dict) or doc.get("v") != VERSION:
        raise EnvelopeError(f"not a version {VERSION} task frame")
    cls = OPS.get(doc["op"]) if isinstance(doc.get("op"), str) else None
    if cls is None:
        raise EnvelopeError(f"unknown task frame op {doc.get('op')!r}")
    names = {f.name for f in fields(cls)}
    extra = set(doc) - names - {"v", "op"}
    if extra:
        raise EnvelopeError(f"{doc['op']}: unknown fields {sorted(extra)}")
    try:
        return _build(cls, {k: v for k, v in doc.items() if k in names})
    except (TypeError, ValueError) as exc:
        if isinstance(exc, EnvelopeError):
            raise
        raise EnvelopeError(f"{doc['op']}: {exc}") from None


def _strs(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise EnvelopeError(f"{what}: expected a list of strings")
    return tuple(value)


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise EnvelopeError(f"{what}: expected an integer")
    return value


def _build(cls: type[Frame], doc: dict[str, Any]) -> Frame:
    if cls is Hello:
        if not isinstance(doc.get("role"), str):
            raise EnvelopeError("hello.role: expected a string")
        return Hello(doc["role"], _int(doc.get("capacity"), "hello.capacity"),
                     _strs(doc.get("handlers", []), "hello.handlers"))
    if cls is StatusFrame:
        return StatusFrame(check_body(Status, doc.get("status")))  # type: ignore[arg-type]
    if cls is Ack:
        return Ack(_strs(doc.get("ids"), "ack.ids"))
    if cls is Cancel:
        return Cancel(_strs(doc.get("ids"), "cancel.ids"))
    if cls is Query:
        return Query(_int(doc.get("req"), "query.req"), _strs(doc.get("ids"), "query.ids"))
    if cls in (Assign, Submit):
        items = doc.get("tasks")
        if not isinstance(items, list):
            raise EnvelopeError("tasks: expected a list")
        tasks = tuple(check_body(Task, item) for item in items)
        if cls is Assign:
            return Assign(tasks)  # type: ignore[arg-type]
        return Submit(_int(doc.get("req"), "submit.req"), tasks)  # type: ignore[arg-type]
    if cls is Results:
        items = doc.get("results")
        if not isinstance(items, list):
            raise EnvelopeError("results: expected a list")
        return Results(tuple(check_body(Result, item) for item in items))  # type: ignore[misc]
    if cls is Accepted:
        refused = doc.get("refused", [])
        if not isinstance(refused, list) or not all(
                isinstance(r, list) and len(r) == 2 and all(isinstance(x, str) for x in r)
                for r in refused):
            raise EnvelopeError("accepted.refused: expected [task ID, reason] pairs")
        return Accepted(_int(doc.get("req"), "accepted.req"), _strs(doc.get("ids"), "ids"),
                        tuple((r[0], r[1]) for r in refused))
    # States
    items = doc.get("states")
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise EnvelopeError("states: expected a list of maps")
    known = {f.name for f in fields(TaskInfo)}
    states = []
    for item in items:
        if set(item) - known or not isinstance(item.get("task_id"), str):
            raise EnvelopeError("states: malformed task state")
        states.append(TaskInfo(**item))
    return States(_int(doc.get("req"), "states.req"), tuple(states))
