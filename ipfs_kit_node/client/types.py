"""Typed answers of the Python API: frozen dataclasses built from the RPC's JSON."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Kubo's ls Type numbers (UnixFS Data types).
_KINDS = {1: "directory", 2: "file", 4: "symlink", 0: "raw", 5: "directory"}


@dataclass(frozen=True)
class NodeId:
    id: str
    public_key: str
    addresses: tuple[str, ...]
    agent_version: str
    protocols: tuple[str, ...]

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> NodeId:
        return cls(doc["ID"], doc.get("PublicKey", ""), tuple(doc.get("Addresses") or ()),
                   doc.get("AgentVersion", ""), tuple(doc.get("Protocols") or ()))


@dataclass(frozen=True)
class Status:
    role: str
    cluster: str
    id: str
    uptime: float
    peers: int
    addresses: tuple[str, ...]

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Status:
        return cls(doc["Role"], doc.get("Cluster", ""), doc["ID"], float(doc["Uptime"]),
                   int(doc["Peers"]), tuple(doc.get("Addresses") or ()))


@dataclass(frozen=True)
class Entry:
    """A folder entry (``ls``)."""

    name: str
    cid: str
    size: int
    type: str  # "file", "directory", "symlink"
    target: str = ""  # a symlink's target as stored

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Entry:
        return cls(doc["Name"], doc["Hash"], int(doc.get("Size") or 0),
                   _KINDS.get(int(doc.get("Type", 2)), "file"), doc.get("Target") or "")


@dataclass(frozen=True)
class Stat:
    """What a CID or path is: ``file``, ``directory``, ``symlink`` or ``raw``, and its size."""

    cid: str
    type: str
    size: int
    target: str = ""

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Stat:
        return cls(doc["Hash"], doc["Type"], int(doc["Size"]), doc.get("Target") or "")


@dataclass(frozen=True)
class BlockStat:
    cid: str
    size: int


@dataclass(frozen=True)
class Pin:
    cid: str
    type: str  # recursive, direct, indirect
    name: str = ""


@dataclass(frozen=True)
class RemotePin:
    """A queued intent to pin or unpin on Kubo or IPFS Cluster."""

    action: str
    cid: str
    target: str
    state: str
    attempts: int
    error: str | None

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> RemotePin:
        return cls(doc["action"], doc["cid"], doc["target"], doc["state"],
                   int(doc.get("attempts") or 0), doc.get("error") or None)


@dataclass(frozen=True)
class Peer:
    id: str
    addr: str
    direction: str

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Peer:
        return cls(doc["Peer"], doc.get("Addr", ""), doc.get("Direction", ""))


@dataclass(frozen=True)
class Message:
    """A pubsub message."""

    sender: str
    data: bytes
    seqno: bytes
    topics: tuple[str, ...]


@dataclass(frozen=True)
class TaskInfo:
    id: str
    state: str  # submitting, queued, assigned, done, failed, cancelled
    handler: str
    worker: str | None
    output: str | None
    error: str | None
    attempts: int

    @property
    def final(self) -> bool:
        return self.state in ("done", "failed", "cancelled")

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> TaskInfo:
        return cls(doc["ID"], doc["State"], doc.get("Handler", ""), doc.get("Worker"),
                   doc.get("Output"), doc.get("Error"), int(doc.get("Attempts") or 0))


@dataclass(frozen=True)
class Submitted:
    accepted: tuple[str, ...]
    refused: tuple[tuple[str, str], ...]  # (task id, reason)


@dataclass(frozen=True)
class Worker:
    peer: str
    running: int
    capacity: int
    cpu: float
    memory: float
    alive: bool

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Worker:
        return cls(doc["peer"], int(doc["running"]), int(doc["capacity"]),
                   float(doc.get("cpu") or 0), float(doc.get("memory") or 0),
                   bool(doc.get("alive")))
