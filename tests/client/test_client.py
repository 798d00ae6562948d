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
from ipfs_kit_node.errors import ApiError, DaemonNotRunningError, IpfsKitError, TaskFailedError

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
    with Client(repo=d.repo) as c, pytest.raises(ApiError, match="not found in the store"):
        c.cat(broken)  # the unix socket ends a failed stream with the same trailer


def test_no_daemon_is_a_clear_error(short_tmp: Path) -> None:
    with pytest.raises(DaemonNotRunningError, match="no ipfs-kit-node daemon"):
        Client(repo=short_tmp).id()


def _hostile_folder(c: Client) -> str:
    """A dag-pb folder listing ``a`` twice: a symlink to ``../.bashrc``, then a file."""
    from multiformats import CID

    from ipfs_kit_node.codecs import dagpb
    from ipfs_kit_node.unixfs import data as fs

    def put(block: bytes) -> CID:
        return CID.decode(c.block.put(block, codec="dag-pb"))

    link = put(dagpb.encode([], fs.UnixFSData(type=fs.SYMLINK, data=b"../.bashrc").encode()))
    payload = b"pwned by a DAG\n"
    f = put(dagpb.encode([], fs.UnixFSData(type=fs.FILE, data=payload,
                                           filesize=len(payload)).encode()))
    return str(put(dagpb.encode([dagpb.PBLink(link, "a", 10), dagpb.PBLink(f, "a", 20)],
                                fs.UnixFSData(type=fs.DIRECTORY).encode())))


def test_get_of_a_name_listed_twice_writes_nothing_outside(daemon: MakeDaemon,
                                                           short_tmp: Path) -> None:
    d = daemon("master").start()
    home = short_tmp / "home"
    home.mkdir()
    (home / ".bashrc").write_text("original\n")
    with Client(repo=d.repo) as c:
        hostile = _hostile_folder(c)
        with pytest.raises(ApiError, match="appears twice"):  # the X-Stream-Error trailer
            c.get(hostile, home / "dl")
    with Client(d.rpc_url, repo=d.repo) as tcp, \
            pytest.raises(ApiError, match="appears twice"):  # on TCP's Kubo RPC too
        tcp.get(hostile, home / "dl2")
    assert (home / ".bashrc").read_text() == "original\n"


def test_untar_refuses_a_member_through_a_symlink(short_tmp: Path) -> None:
    """The client's own guard, against a tar no honest daemon sends."""
    import io
    import tarfile

    from ipfs_kit_node.client._sync import untar

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        top = tarfile.TarInfo("cid")
        top.type = tarfile.DIRTYPE
        tar.addfile(top)
        link = tarfile.TarInfo("cid/a")
        link.type, link.linkname = tarfile.SYMTYPE, "."
        tar.addfile(link)
        evil = tarfile.TarInfo("cid/a")
        evil.size = 5
        tar.addfile(evil, io.BytesIO(b"pwned"))
    home = short_tmp / "home"
    home.mkdir()
    with pytest.raises(IpfsKitError, match="goes through the symlink"):
        untar(iter([buf.getvalue()]), home / "dl")
    assert sorted(p.name for p in home.iterdir()) == ["dl"]
    assert [p.name for p in (home / "dl").iterdir()] == ["a"]
    one = io.BytesIO()
    with tarfile.open(fileobj=one, mode="w") as tar:  # a lone file: written as ``out``
        info = tarfile.TarInfo("cid")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    untar(iter([one.getvalue()]), home / "f")
    assert (home / "f").read_bytes() == b"hi"
