"""A raw Yamux peer that ignores flow control: it pushes 96 MiB of DATA frames on a stream the
daemon never reads (an identify stream: the daemon answers and never reads it), 384 times the
256 KiB window it was granted. py-libp2p kept all of it; our session resets that stream, drops
what it held, discards what still comes for it, and keeps the peer's other streams working.

The RST is what the test waits for (deterministic); RSS growth is the health check's bound.
"""

from __future__ import annotations

import struct
import time

import multiaddr
import trio
from helpers import make_host
from hostile_kit import Target
from libp2p.custom_types import TProtocol
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.stream_muxer.yamux import yamux as lib_yamux

IDENTIFY = "/ipfs/id/1.0.0"
PING = "/ipfs/ping/1.0.0"
LIVENESS_S = 10.0
FRAME = 64 * 1024 - 12  # a full go-yamux frame
PUSH_MIB = 96


def data_frames(stream_id: int, count: int) -> bytes:
    """``count`` full DATA frames for ``stream_id``, with no regard for the window."""
    header = struct.pack(lib_yamux.YAMUX_HEADER_FORMAT, 0, lib_yamux.TYPE_DATA, 0, stream_id,
                         FRAME)
    return (header + b"\xa5" * FRAME) * count


async def test_window_overrun_resets_the_stream_only(hostile_worker: Target) -> None:
    d = hostile_worker.daemon
    log_from = len(d.log())
    host = make_host()
    async with host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        info = info_from_p2p_addr(multiaddr.Multiaddr(d.addr))
        await host.connect(info)
        stream = await host.new_stream(info.peer_id, [TProtocol(IDENTIFY)])
        muxed = stream.muxed_stream
        conn = stream.muxed_conn
        burst = data_frames(muxed.stream_id, 16)  # ~1 MiB per write
        started = time.monotonic()
        reset_after = None
        with trio.fail_after(120):
            for _ in range(PUSH_MIB):  # go on after the reset: those frames must be dropped
                await conn._write_frame(burst)
                if reset_after is None and muxed.reset_received:
                    reset_after = time.monotonic() - started
            with trio.move_on_after(LIVENESS_S):
                while not muxed.reset_received:
                    await trio.sleep(0.05)
        assert muxed.reset_received, "the daemon kept a stream whose peer overran its window"
        if reset_after is None:
            reset_after = time.monotonic() - started
        print(f"\nstream reset {reset_after:.2f} s into a {PUSH_MIB} MiB push")

        # The same connection still serves: a ping round trip on a new stream.
        with trio.fail_after(LIVENESS_S):
            ping = await host.new_stream(info.peer_id, [TProtocol(PING)])
            payload = bytes(range(32))
            await ping.write(payload)
            echoed = b""
            while len(echoed) < 32:
                echoed += await ping.read(32 - len(echoed))
        assert echoed == payload
        await ping.close()

    assert "yamux window exceeded" in d.log()[log_from:]
    figures = hostile_worker.healthy()  # id answers, known file intact, RSS growth bounded
    print(f"health: {figures}")
