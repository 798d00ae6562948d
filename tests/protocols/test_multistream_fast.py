"""Inbound multistream-select answered in one write (ipfs_kit_node/transport/multistream.py):
the line codec, a lazy dialer (Kubo's: header, protocol and message in one write) answered
with header and echo in one read and its message left for the handler, a strict dialer
(py-libp2p's own, waiting for our header) and an unknown protocol, on real sockets."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import multiaddr
import pytest
import trio
from libp2p import new_host
from libp2p.abc import INetStream
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig
from libp2p.peer.peerinfo import PeerInfo
from libp2p.protocol_muxer.exceptions import MultiselectError
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_ID
from libp2p.stream_muxer.yamux import yamux as lib_yamux

from ipfs_kit_node.transport import NoiseTransport, Yamux
from ipfs_kit_node.transport.multistream import (
    MAX_COMMANDS,
    FastMultiselect,
    delimited,
    install_fast_multiselect,
    split_line,
)

PROTOCOL = TProtocol("/test/echo/1.0.0")
HEADER = delimited(b"/multistream/1.0.0")


def test_line_codec() -> None:
    line = delimited(b"/ipfs/bitswap/1.2.0")
    assert line == b"\x14/ipfs/bitswap/1.2.0\n"
    assert split_line(line + b"rest") == (b"/ipfs/bitswap/1.2.0", len(line))
    for cut in range(len(line)):
        assert split_line(line[:cut]) is None  # incomplete: wait for more
    long = delimited(b"x" * 300)
    assert long[:2] == b"\xad\x02" and split_line(long) == (b"x" * 300, len(long))
    with pytest.raises(MultiselectError):
        split_line(b"\x03abc")  # not newline-ended
    with pytest.raises(MultiselectError):
        split_line(b"\x00")
    with pytest.raises(MultiselectError):
        split_line(delimited(b"x" * 2000))


def _host() -> Any:
    kp = create_new_key_pair()
    sec = NoiseTransport(kp, noise_privkey=create_x25519_key_pair().private_key)
    host = new_host(key_pair=kp, sec_opt={TProtocol(NOISE_ID): sec},
                    muxer_opt={TProtocol(lib_yamux.PROTOCOL_ID): Yamux},
                    connection_config=ConnectionConfig(max_connections_per_peer=1))
    install_fast_multiselect(host)
    return host


@contextlib.asynccontextmanager
async def _pair() -> AsyncIterator[tuple[Any, Any, list[bytes]]]:
    client, server = _host(), _host()
    got: list[bytes] = []

    async def echo(stream: INetStream) -> None:
        data = await stream.read(1024)
        got.append(data)
        await stream.write(b"echo:" + data)
        await stream.close()

    server.set_stream_handler(PROTOCOL, echo)
    assert isinstance(server.multiselect, FastMultiselect)
    assert PROTOCOL in server.multiselect.handlers  # registered after the swap: kept
    listen = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
    async with client.run(listen), server.run(listen):
        await client.connect(PeerInfo(server.get_id(), server.get_addrs()))
        yield client, server, got


async def _raw_stream(client: Any, server: Any) -> Any:
    conn = client.get_network().get_connections(server.get_id())[0]
    return await conn.muxed_conn.open_stream()


async def _read_until(stream: Any, n: int) -> bytes:
    out = b""
    with trio.fail_after(10):
        while len(out) < n:
            out += await stream.read(n - len(out))
    return out


async def test_lazy_dialer_gets_one_answer_and_its_message_reaches_the_handler() -> None:
    async with _pair() as (client, server, got):
        raw = await _raw_stream(client, server)
        await raw.write(HEADER + delimited(PROTOCOL.encode()) + b"hello")
        answer = HEADER + delimited(PROTOCOL.encode())
        assert await _read_until(raw, len(answer)) == answer
        assert await _read_until(raw, len(b"echo:hello")) == b"echo:hello"
        assert got == [b"hello"]


async def test_strict_dialer_and_many_streams() -> None:
    """py-libp2p's dialer waits for our header before it proposes: no deadlock."""
    async with _pair() as (client, server, got):
        for n in range(20):
            with trio.fail_after(10):
                stream = await client.new_stream(server.get_id(), [PROTOCOL])
                await stream.write(b"m%d" % n)
                assert await stream.read(100) == b"echo:m%d" % n
                await stream.close()
        assert got == [b"m%d" % n for n in range(20)]


async def test_unknown_protocol_gets_na_then_a_known_one_is_accepted() -> None:
    async with _pair() as (client, server, got):
        raw = await _raw_stream(client, server)
        await raw.write(HEADER + delimited(b"/nope/1.0.0"))
        want = HEADER + delimited(b"na")
        assert await _read_until(raw, len(want)) == want
        await raw.write(delimited(PROTOCOL.encode()) + b"x")
        want = delimited(PROTOCOL.encode()) + b"echo:x"
        assert await _read_until(raw, len(want)) == want
        assert got == [b"x"]


async def test_bad_header_resets_the_stream_and_keeps_the_connection() -> None:
    async with _pair() as (client, server, got):
        raw = await _raw_stream(client, server)
        await raw.write(delimited(b"/not-multistream/9") + delimited(PROTOCOL.encode()))
        with trio.fail_after(10), pytest.raises(Exception):  # noqa: B017 - reset or EOF
            while await raw.read(100):
                pass
        stream = await client.new_stream(server.get_id(), [PROTOCOL])  # connection lives
        await stream.write(b"ok")
        with trio.fail_after(10):
            assert await stream.read(100) == b"echo:ok"
        assert got == [b"ok"]  # the refused stream never reached the handler


async def _drain(stream: Any) -> bytes:
    """What the server sends until it resets or closes the stream."""
    out = b""
    with trio.fail_after(10), contextlib.suppress(Exception):
        while chunk := await stream.read(1 << 16):
            out += chunk
    return out


def _lines(data: bytes) -> list[bytes]:
    found = []
    while (line := split_line(data)) is not None:
        found.append(line[0])
        data = data[line[1]:]
    return found


async def test_line_flood_is_cut_off_and_answers_are_not_gathered() -> None:
    """A peer that buffers thousands of ``ls``/unknown lines (256 KiB, within the window)
    and only reads afterwards gets at most MAX_COMMANDS answers and a reset; the
    connection keeps serving. Before, every answer was built in memory first (~200 MiB
    over 20 such streams)."""
    async with _pair() as (client, server, got):
        for line in (b"ls", b"/nope/1.0.0"):
            raw = await _raw_stream(client, server)
            with contextlib.suppress(Exception):  # the reset may land while we still write
                await raw.write(HEADER + delimited(line) * (256 * 1024 // (len(line) + 2)))
            answers = _lines(await _drain(raw))  # ends in a reset (within 10 s)
            assert len(answers) <= 1 + MAX_COMMANDS  # pending answers may go unsent
            assert answers[:1] in ([], [b"/multistream/1.0.0"])
            assert all((line == b"ls" and PROTOCOL.encode() in a) or a == b"na"
                       for a in answers[1:])
        stream = await client.new_stream(server.get_id(), [PROTOCOL])
        await stream.write(b"ok")
        with trio.fail_after(10):
            assert await stream.read(100) == b"echo:ok"
        assert got == [b"ok"]


async def test_a_few_proposals_and_ls_before_a_known_protocol_are_answered() -> None:
    async with _pair() as (client, server, got):
        raw = await _raw_stream(client, server)
        tries = [delimited(b"/nope/%d" % n) for n in range(MAX_COMMANDS - 2)]
        await raw.write(HEADER + delimited(b"ls") + b"".join(tries)
                        + delimited(PROTOCOL.encode()) + b"hi")
        answers: list[bytes] = []
        data = b""
        with trio.fail_after(10):
            while len(answers) < MAX_COMMANDS + 1 or not data.endswith(b"echo:hi"):
                data += await raw.read(1 << 16)
                answers = _lines(data)
        assert answers[-1] == PROTOCOL.encode() and answers[2:-1] == [b"na"] * len(tries)
        assert got == [b"hi"]
