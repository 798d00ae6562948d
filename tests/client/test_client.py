"""The Python Client against a real daemon: every area once, errors with the daemon's message,
the unix socket and the TCP RPC alike."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import Daemon

from ipfs_kit_node import Client
from ipfs_kit_node.client import Entry, Pin, Stat
from ipfs_kit_node.errors import ApiError, DaemonNotRunningError, TaskFailedError

MakeDaemon = Callable[..., Daemon]


def test_client_against_a_daemon(daemon: MakeDaemon, short_tmp: Path) -> None:
    d = daemon("master").start()
    with Client(repo=d.repo) as c:
        assert c.id().id == c.status().id
        assert c.status().role == "master"
        data = os.urandom(700_000)
        cid = c.add_bytes(data)
        assert c.cat(cid) == data
        assert c.cat(cid, 1000, 50) == data[1000:1050]
        assert b"".join(c.iter_cat(cid)) == data
        with c.open(cid) as f:
            f.seek(-10, 2)
            assert f.read() == data[-10:]
        assert c.stat(cid) == Stat(cid, "file", len(data))
        assert c.add(iter([data[:5], data[5:]])) == cid  # chunks in: the same CID

        folder = short_tmp / "in"
        (folder / "sub").mkdir(parents=True)
        (folder / "a.txt").write_bytes(b"A")
        (folder / "sub" / "b.txt").write_bytes(b"B")
        root = c.add(folder, recursive=True)
        names = [(e.name, e.type) for e in c.ls(root)]
        assert names == [("a.txt", "file"), ("sub", "directory")]
        assert c.cat(f"{root}/sub/b.txt") == b"B"
        assert isinstance(c.ls(root)[0], Entry)
        out = c.get(root, short_tmp / "out")
        assert (out / "sub" / "b.txt").read_bytes() == b"B"

        assert Pin(root, "recursive") in c.pin.ls(type="recursive")
        assert c.pin.rm(root) == [root]
        assert c.pin.add(root) == [root]
        assert c.pin.ls(root)[0].type == "recursive"

        block = c.block.put(b"raw bytes")
        assert c.block.get(block) == b"raw bytes" and c.block.stat(block).size == 9
        node = c.dag.put({"a": 1, "link": {"/": block}})
        assert c.dag.get(node) == {"a": 1, "link": {"/": block}}
        assert c.dag.resolve(f"{node}/link") == block
        assert c.dag.stat(node)["UniqueBlocks"] == 2
        assert c.swarm.peers() == []
        assert c.pubsub.ls() == []
        assert c.workers() == [] and c.task.stats() == {}

        with pytest.raises(ApiError) as bad:
            c.cat("not-a-cid")
        assert bad.value.status == 400 and "not a CID" in str(bad.value)
        with pytest.raises(ApiError, match=r"is a folder|not a file|directory"):
            c.cat(root)
        task = c.task.submit("sha256", [cid])  # no worker yet: it waits in the queue
        assert c.task.status(task).state == "queued"
        assert c.task.cancel(task).state == "cancelled"
        with pytest.raises(TaskFailedError, match="cancelled"):
            c.task.result(task)
        assert [t.id for t in c.task.list()] == [task]
    with Client(d.rpc_url, repo=d.repo) as tcp:  # Kubo's RPC on TCP: the same answers
        assert tcp.endpoint.unix is None
        assert tcp.cat(cid, 0, 10) == data[:10]
        assert tcp.add_bytes(data) == cid
        broken = tcp.add_bytes(os.urandom(600_000), pin=False)
        tcp.block.rm(tcp.dag.get(broken)["Links"][-1]["Hash"]["/"])
        with pytest.raises(ApiError, match="not found in the store"):  # Kubo's trailer
            tcp.cat(broken)
    with Client(repo=d.repo) as c, pytest.raises(ApiError, match="broke off"):
        c.cat(broken)  # the unix socket cuts the connection instead


def test_no_daemon_is_a_clear_error(short_tmp: Path) -> None:
    with pytest.raises(DaemonNotRunningError, match="no ipfs-kit-node daemon"):
        Client(repo=short_tmp).id()
