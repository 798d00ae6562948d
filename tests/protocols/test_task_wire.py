"""The task stream and pubsub on the wire, driven by a raw py-libp2p peer with bad bytes."""

from __future__ import annotations

from collections.abc import Callable

import multiaddr
import pytest
import trio
from helpers import Daemon, make_host, wait_until
from libp2p.custom_types import TProtocol
from libp2p.peer.peerinfo import info_from_p2p_addr

from ipfs_kit_node.codecs.varint import encode as varint
from ipfs_kit_node.protocols.tasks import Task
from ipfs_kit_node.protocols.tasks.frames import Accepted, FrameReader, Submit, encode_frame

MakeDaemon = Callable[..., Daemon]


async def send_raw(d: Daemon, protocol: str, payload: bytes, wait: float = 2.0,
                   until_frame: bool = False) -> bytes:
    """Open a stream, send bytes, return what comes back before the peer hangs up (or, with
    ``until_frame``, as soon as one task frame has come whole), within ``wait`` seconds."""
    host = make_host()
    got = bytearray()
    reader = FrameReader()
    async with host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        info = info_from_p2p_addr(multiaddr.Multiaddr(d.addr))
        await host.connect(info)
        stream = await host.new_stream(info.peer_id, [TProtocol(protocol)])
        try:
            await stream.write(payload)
            with trio.move_on_after(wait):
                while True:
                    data = await stream.read(65536)
                    if not data:
                        break
                    got += data
                    if until_frame and reader.feed(data):
                        break
        except Exception:
            pass  # reset by the daemon: expected for garbage
    return bytes(got)


async def test_garbage_pubsub_rpc_resets_one_stream_not_the_node(daemon: MakeDaemon) -> None:
    d = daemon().start()
    await send_raw(d, "/meshsub/1.1.0", varint(6) + b"\xff\xff\xff\xff\xff\xff")
    assert wait_until(lambda: "malformed pubsub RPC; stream reset" in d.log(), 10)
    assert d.proc is not None and d.proc.poll() is None
    assert d.api("status")["Role"] == "worker"


@pytest.mark.parametrize("payload", [
    varint(5) + b"\xc1\xc1\xc1\xc1\xc1",  # not msgpack
    b"\xff\xff\xff\x7f",  # a 256 MiB frame announced
    varint(3) + b"\x93\x01\x02",  # msgpack, but not a frame
])
async def test_malformed_task_frames_close_the_session(daemon: MakeDaemon,
                                                       payload: bytes) -> None:
    master = daemon(role="master").start()
    await send_raw(master, "/ipfs-kit/tasks/1.0.0", payload)
    assert wait_until(lambda: "malformed task frame; session closed" in master.log(), 10)
    assert master.api("task/stats")["States"] == {}


async def test_unlisted_peers_cannot_submit_and_workers_take_no_inbound_tasks(
        daemon: MakeDaemon) -> None:
    master = daemon(role="master", name="m").start()
    answer = await send_raw(master, "/ipfs-kit/tasks/1.0.0",
                            encode_frame(Submit(1, (Task("t", "noop"),))), wait=20.0,
                            until_frame=True)  # the answer, however slow the master is
    frame = FrameReader().feed(answer)[0]
    assert isinstance(frame, Accepted) and frame.ids == ()
    assert "tasks.submitters" in frame.refused[0][1]
    assert master.api("task/stats")["States"] == {}
    worker = daemon(name="w").start()
    with pytest.raises(Exception):  # noqa: B017 - py-libp2p's negotiation error type varies
        await send_raw(worker, "/ipfs-kit/tasks/1.0.0", b"")
