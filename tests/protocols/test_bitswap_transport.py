"""Our Yamux and Noise subclasses (ipfs_kit_node/transport) under Bitswap-sized traffic, on
real sockets: bytes arrive whole and in order, credit never exceeds the window, reads grant
it in batches (not once per read), a writer out of credit resumes when the reader reads, and
our Noise framing talks to the library's."""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
from collections.abc import AsyncIterator
from typing import Any

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import INetStream
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig
from libp2p.peer.peerinfo import PeerInfo
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_ID
from libp2p.security.noise.transport import Transport as LibraryNoise
from libp2p.stream_muxer.yamux import yamux as lib_yamux

from ipfs_kit_node.transport import NoiseTransport, Yamux, YamuxStream

PROTOCOL = TProtocol("/test/bulk/1.0.0")


def _host(noise: type[LibraryNoise] = NoiseTransport) -> Any:
    kp = create_new_key_pair()
    sec = noise(kp, noise_privkey=create_x25519_key_pair().private_key)
    return new_host(key_pair=kp, sec_opt={TProtocol(NOISE_ID): sec},
                    muxer_opt={TProtocol(lib_yamux.PROTOCOL_ID): Yamux},
                    connection_config=ConnectionConfig(max_connections_per_peer=1))


@contextlib.asynccontextmanager
async def _pair(server_noise: type[LibraryNoise] = NoiseTransport
                ) -> AsyncIterator[tuple[Any, Any]]:
    client, server = _host(), _host(server_noise)
    listen = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
    async with client.run(listen), server.run(listen):
        await client.connect(PeerInfo(server.get_id(), server.get_addrs()))
        yield client, server


async def _read_all(stream: INetStream, size: int, chunk: int = 256 * 1024) -> bytes:
    got = bytearray()
    while len(got) < size:
        data = await stream.read(chunk)
        if not data:
            break
        got += data
    return bytes(got)


async def test_bulk_both_ways_many_streams_whole_and_within_the_window() -> None:
    """Four streams at once, 4 MiB each way on each, written as 1 MiB messages (Bitswap's
    batch): every byte arrives in order, and the credit a reader has granted never passes
    its window (py-libp2p's own grew past 16 MiB, and js-libp2p's window-sized frame then
    broke the connection)."""
    size = 4 * 1024 * 1024
    payloads = [os.urandom(size) for _ in range(4)]
    received: dict[int, bytes] = {}
    peaks: list[int] = []

    async def serve(stream: INetStream) -> None:
        first = await stream.read(1)
        index = first[0]
        received[index] = await _read_all(stream, size)
        assert isinstance(stream.muxed_stream, YamuxStream)
        muxed = stream.muxed_stream
        peaks.append(muxed.recv_window + len(muxed.conn.stream_buffers.get(muxed.stream_id,
                                                                         b"")))
        for start in range(0, size, 1 << 20):
            await stream.write(payloads[index][::-1][start:start + (1 << 20)])
        await stream.close()

    async with _pair() as (client, server):
        server.set_stream_handler(PROTOCOL, serve)
        echoed: dict[int, bytes] = {}

        async def one(index: int) -> None:
            stream = await client.new_stream(server.get_id(), [PROTOCOL])
            await stream.write(bytes([index]))
            for start in range(0, size, 1 << 20):
                await stream.write(payloads[index][start:start + (1 << 20)])
            echoed[index] = await _read_all(stream, size)

        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                for index in range(4):
                    nursery.start_soon(one, index)
    for index in range(4):
        assert hashlib.sha256(received[index]).digest() == hashlib.sha256(
            payloads[index]).digest()
        assert echoed[index] == payloads[index][::-1]
    assert all(0 <= p <= lib_yamux.MAX_WINDOW_SIZE for p in peaks), peaks


async def test_credit_is_granted_in_batches_and_a_stalled_writer_resumes() -> None:
    """The reader reads 8 MiB in 16 KiB reads: it grants credit about once per half window,
    not once per read (py-libp2p sent one WINDOW_UPDATE per read: ~9,000 for 64 MiB from
    Kubo). The writer runs out of credit while the reader sleeps, and resumes when it reads."""
    size = 8 * 1024 * 1024
    payload = os.urandom(size)
    updates = 0
    original = YamuxStream.send_window_update

    async def counted(self: YamuxStream, increment: int, skip_lock: bool = False) -> None:
        nonlocal updates
        updates += 1
        await original(self, increment, skip_lock)

    got = trio.Event()
    data = b""
    reads = 0

    async def serve(stream: INetStream) -> None:
        nonlocal data, reads
        await trio.sleep(1.0)  # the writer fills the 256 KiB window and waits for credit
        buf = bytearray()
        while len(buf) < size:
            chunk = await stream.read(16 * 1024)
            reads += 1
            buf += chunk
        data = bytes(buf)
        got.set()

    YamuxStream.send_window_update = counted  # type: ignore[method-assign]
    try:
        async with _pair() as (client, server):
            server.set_stream_handler(PROTOCOL, serve)
            stream = await client.new_stream(server.get_id(), [PROTOCOL])
            with trio.fail_after(60):
                await stream.write(payload)
                await got.wait()
    finally:
        YamuxStream.send_window_update = original  # type: ignore[method-assign]
    assert data == payload
    print(f"\n{reads} reads of 16 KiB granted credit {updates} times")
    assert reads > 400
    assert updates < reads // 4


async def test_our_noise_framing_talks_to_the_librarys() -> None:
    """Our Noise (one seal and send per write, buffered reads) against py-libp2p's own,
    2 MiB each way: the wire format is the spec's either way."""
    size = 2 * 1024 * 1024
    payload = os.urandom(size)
    back = os.urandom(size)
    heard = b""

    async def serve(stream: INetStream) -> None:
        nonlocal heard
        heard = await _read_all(stream, size)
        await stream.write(back)
        await stream.close()

    async with _pair(server_noise=LibraryNoise) as (client, server):
        server.set_stream_handler(PROTOCOL, serve)
        stream = await client.new_stream(server.get_id(), [PROTOCOL])
        with trio.fail_after(60):
            await stream.write(payload)
            answer = await _read_all(stream, size)
    assert heard == payload and answer == back


ECHO = TProtocol("/test/echo/1.0.0")
PARKED = TProtocol("/test/parked/1.0.0")


async def _echo(stream: INetStream) -> None:
    await stream.write(b"echo:" + await stream.read(100))
    await stream.close()


async def _parked(stream: INetStream) -> None:
    await trio.sleep_forever()  # never reads: what the peer sends stays buffered


def _conn(client: Any, server: Any) -> Any:
    return client.get_network().get_connections(server.get_id())[0].muxed_conn


async def test_a_window_overrun_resets_that_stream_and_the_session_goes_on() -> None:
    """Our session's reader: a peer that sends past a stream's window (a SYN'd stream nobody
    reads) loses that stream (RST both ways, its buffer dropped); frames still coming for it
    are dropped, and a new stream on the same connection works."""
    frame = 64 * 1024 - 12
    async with _pair() as (client, server):
        server.set_stream_handler(PARKED, _parked)
        server.set_stream_handler(ECHO, _echo)
        stream = await client.new_stream(server.get_id(), [PARKED])
        muxed = stream.muxed_stream
        header = struct.pack(lib_yamux.YAMUX_HEADER_FORMAT, 0, lib_yamux.TYPE_DATA, 0,
                             muxed.stream_id, frame)
        conn = _conn(client, server)
        with trio.fail_after(30):
            for _ in range(12):  # ~768 KiB against a 256 KiB window, past the reset too
                await conn._write_frame(header + b"\xa5" * frame)
            while not muxed.reset_received:
                await trio.sleep(0.02)
            again = await client.new_stream(server.get_id(), [ECHO])
            await again.write(b"ok")
            assert await again.read(100) == b"echo:ok"
        assert not conn.event_shutting_down.is_set()


async def test_an_oversized_frame_ends_the_session_with_go_away() -> None:
    """A DATA header announcing more than 16 MiB: the reader refuses it before holding any
    of it, tells the peer (GO_AWAY, protocol error) and ends the session."""
    async with _pair() as (client, server):
        conn = _conn(client, server)
        got: list[int] = []
        original = conn._on_frame

        async def spy(frame: Any) -> bool:
            if frame.type == lib_yamux.TYPE_GO_AWAY:
                got.append(frame.length)
            result: bool = await original(frame)
            return result

        conn._on_frame = spy
        header = struct.pack(lib_yamux.YAMUX_HEADER_FORMAT, 0, lib_yamux.TYPE_DATA, 0, 1,
                             lib_yamux.MAX_WINDOW_SIZE + 1)
        with trio.fail_after(30):
            await conn._write_frame(header)
            await conn.event_shutting_down.wait()
        assert got == [lib_yamux.GO_AWAY_PROTOCOL_ERROR]
