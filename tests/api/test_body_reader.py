"""The streamed request body read without h11 (api/body.py ``_socket_body``): the framing
parser on a real socket pair under any cut of the bytes, and a daemon keeping a connection in
step after an upload read that way (a request pipelined behind it is answered)."""

from __future__ import annotations

import json
import os
import socket
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import h11
import pytest
import trio
from dag import raw_block
from helpers import Daemon
from hypothesis import given, settings
from hypothesis import strategies as st

from ipfs_kit_node.api import limits, server
from ipfs_kit_node.api.body import BodyFraming, _socket_body
from ipfs_kit_node.api.router import Request, Response, Router
from ipfs_kit_node.codecs.putmany import encode_frame

MakeDaemon = Callable[..., Daemon]


def chunked(pieces: list[bytes], ext: bool, trailer: bool) -> bytes:
    out = b"".join(b"%x%s\r\n%s\r\n" % (len(p), b";x=1" if ext else b"", p)
                   for p in pieces if p)
    return out + b"0\r\n" + (b"X-A: 1\r\nX-B: 2\r\n" if trailer else b"") + b"\r\n"


def read_over_socket(wire: bytes, cuts: list[int], framing: BodyFraming, head: int,
                     close: bool = False) -> tuple[list[bytes], bytes]:
    """Send ``wire`` over a socket pair in ``cuts``-sized writes (the first ``head`` bytes
    as if already received with the request head); the pieces read and the bytes left."""
    async def main() -> tuple[list[bytes], bytes]:
        ours, theirs = socket.socketpair()
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
        peer = trio.SocketStream(trio.socket.from_stdlib_socket(theirs))
        got: list[bytes] = []
        left: list[bytes] = []

        async def send() -> None:
            pos, i = head, 0
            while pos < len(wire):
                step = max(cuts[i % len(cuts)], len(wire) // 64)  # at most ~64 writes
                await peer.send_all(wire[pos:pos + step])
                pos, i = pos + step, i + 1
                await trio.sleep(0)
            if close:
                await peer.aclose()

        async with stream, peer, trio.open_nursery() as nursery:
            nursery.start_soon(send)
            async for piece in _socket_body(stream, framing, wire[:head], left):
                assert type(piece) is bytes and piece
                got.append(piece)
        return got, left[0]
    try:
        return trio.run(main)
    except BaseExceptionGroup as group:  # the reader's own error, out of the nursery
        raise group.exceptions[0] from None


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.sampled_from([0, 1, 2, 40, 5000, 70_000, 300_000]), max_size=6),
       cuts=st.lists(st.integers(1, 200_000), min_size=1, max_size=8),
       head=st.integers(0, 100), ext=st.booleans(), trailer=st.booleans())
def test_chunked_bodies_under_any_cut(sizes: list[int], cuts: list[int], head: int, ext: bool,
                                      trailer: bool) -> None:
    pieces = [os.urandom(n) for n in sizes]
    after = b"POST /next HTTP/1.1\r\n"  # a pipelined request behind the body
    wire = chunked(pieces, ext, trailer) + after
    framing = BodyFraming(None)
    got, left = read_over_socket(wire, cuts, framing, min(head, len(wire)))
    assert b"".join(got) == b"".join(pieces)
    assert framing.done and after.startswith(left)  # what came with the body's end
    for p in pieces:  # a chunk that fits the buffer arrives whole, as the bytes it is
        if len(p) >= 64 * 1024:
            assert p in got


@settings(max_examples=30, deadline=None)
@given(size=st.integers(0, 400_000), cuts=st.lists(st.integers(1, 100_000), min_size=1,
                                                    max_size=5))
def test_sized_bodies_under_any_cut(size: int, cuts: list[int]) -> None:
    body = os.urandom(size)
    framing = BodyFraming(size)
    got, left = read_over_socket(body + b"GET", cuts, framing, 0)
    assert b"".join(got) == body and b"GET".startswith(left)


@pytest.mark.parametrize("bad", [b"zz\r\n", b"5\r\nabcdeXY", b"1" * 2000])
def test_bad_chunk_framing_is_refused(bad: bytes) -> None:
    with pytest.raises(h11.RemoteProtocolError):
        read_over_socket(bad + b"\r\n" * 2, [len(bad) + 4], BodyFraming(None), 0)


def test_a_cut_body_is_refused() -> None:
    with pytest.raises(h11.RemoteProtocolError, match="closed in the middle"):
        read_over_socket(b"10\r\nabc", [5], BodyFraming(None), 0, close=True)


def _ask(conn: h11.Connection) -> None:
    """Put the client side in step with the request just sent by hand (its bytes unused)."""
    conn.send(h11.Request(method="POST", target="/", headers=[("host", "x")]))
    conn.send(h11.EndOfMessage())


def _answers(sock: socket.socket, n: int) -> list[h11.Response | bytes]:
    """``n`` answers read off the socket with h11: each one's head, then its body bytes."""
    conn = h11.Connection(h11.CLIENT)
    _ask(conn)
    out: list[h11.Response | bytes] = []
    body = b""
    while len(out) < 2 * n:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = sock.recv(65536)
            assert data, out
            conn.receive_data(data)
        elif isinstance(event, h11.Response):
            out.append(event)
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            out.append(body)
            body = b""
            if len(out) < 2 * n:
                conn.start_next_cycle()
                _ask(conn)
    return out


def test_an_upload_then_a_pipelined_request_on_one_connection(daemon: MakeDaemon,
                                                               short_tmp: Path) -> None:
    d = daemon().start()
    blocks = [raw_block(size=n) for n in (300_000, 10, 70_000)]
    frames = [encode_frame(bytes(c), data) for c, data in blocks]
    host, port = d.rpc_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        for sized in (False, True):
            body = b"".join(frames) if sized else chunked(frames, False, True)
            framing = b"Content-Length: %d\r\n" % len(body) if sized else \
                b"Transfer-Encoding: chunked\r\n"
            sock.sendall(b"POST /api/v0/block/put-many HTTP/1.1\r\nHost: x\r\n" + framing +
                         b"\r\n" + body + b"POST /api/v0/block/stat?arg=" +
                         str(blocks[0][0]).encode() + b" HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Length: 0\r\n\r\n")
            put, put_body, stat, stat_body = _answers(sock, 2)
            assert isinstance(put, h11.Response) and put.status_code == 200, put_body
            assert isinstance(put_body, bytes) and json.loads(put_body)["Blocks"] == 3
            assert isinstance(stat, h11.Response) and stat.status_code == 200
            assert isinstance(stat_body, bytes) and json.loads(stat_body)["Size"] == 300_000
        # nothing behind the body: the connection waits for the next request (an upload
        # ending with its last byte read once closed kept-alive connections: aiohttp)
        body = chunked(frames, False, False)
        sock.sendall(b"POST /api/v0/block/put-many HTTP/1.1\r\nHost: x\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n" + body)
        put, _ = _answers(sock, 1)
        assert isinstance(put, h11.Response) and put.status_code == 200
        sock.sendall(b"POST /api/v0/block/stat?arg=" + str(blocks[1][0]).encode() +
                     b" HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        stat, stat_body = _answers(sock, 1)
        assert isinstance(stat, h11.Response) and stat.status_code == 200
        assert isinstance(stat_body, bytes) and json.loads(stat_body)["Size"] == 10
        # a bad chunk header: a 400, and the node answers the next connection
        sock.sendall(b"POST /api/v0/block/put-many HTTP/1.1\r\nHost: x\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\nnot hex\r\n")
        bad = _answers(sock, 1)[0]
        assert isinstance(bad, h11.Response) and bad.status_code == 400
    assert d.cli("id").returncode == 0


def _h11_chunked(wire: bytes) -> tuple[bytes, bytes] | str:
    """What h11 makes of ``wire`` as a chunked body: (data, bytes behind it) or "error"."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + wire)
    data = b""
    try:
        while True:
            event = conn.next_event()
            assert event is not h11.NEED_DATA, wire
            if isinstance(event, h11.Data):
                data += event.data
            elif isinstance(event, h11.EndOfMessage):
                return data, conn.trailing_data[0]
    except h11.RemoteProtocolError:
        return "error"


@pytest.mark.parametrize("end", [b"0\r\n\n", b"0\r\nX-A: 1\r\n\n", b"0\r\nX-A: 1\n\r\n",
                                 b"0\r\nX-A: 1\nX-B: 2\n\n", b"0\r\n\r\n", b"0\r\nbad\r\n\r\n",
                                 b"0\r\nX-A: 1\r\n bad fold\r\n\r\n", b"0\r\n\rX: 1\r\n\r\n"])
def test_the_trailer_ends_where_h11_ends_it(end: bytes) -> None:
    """A bare-LF empty line ends the trailer as in h11 (the parser used to scan on for CRLF
    CRLF, swallowing the request behind); a trailer h11 refuses is refused."""
    wire = b"3\r\nabc\r\n" + end + b"GET / HTTP/1.1\r\n"
    theirs = _h11_chunked(wire)
    if theirs == "error":
        with pytest.raises(h11.RemoteProtocolError):
            read_over_socket(wire, [len(wire)], BodyFraming(None), 0)
        return
    for cuts in ([len(wire)], [1], [7]):
        got, left = read_over_socket(wire, cuts, BodyFraming(None), 0)
        assert isinstance(theirs, tuple) and b"".join(got) == theirs[0] == b"abc"
        assert theirs[1].startswith(left)


def test_a_stalled_body_holds_a_small_buffer_and_big_chunks_still_arrive_whole() -> None:
    """A client that sent a head and a few bytes costs a 64 KiB buffer, not 2 MiB (100 such
    took 200 MiB of RSS); the buffer grows for a 1 MiB chunk, which still arrives whole."""
    async def stalled(framing: BodyFraming) -> int:
        ours, theirs = socket.socketpair()
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
        tracemalloc.start()
        try:
            with trio.move_on_after(0.5):  # the client sends nothing more
                async for _ in _socket_body(stream, framing, b"5\r\nab", []):
                    pass
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            theirs.close()
            await stream.aclose()

    for framing in (BodyFraming(None), BodyFraming(50 << 20)):
        assert trio.run(stalled, framing) < 256 * 1024
    pieces = [os.urandom(1 << 20), os.urandom(10), os.urandom(1 << 20)]
    got, _ = read_over_socket(chunked(pieces, False, False), [1000, 70_000], BodyFraming(None), 5)
    assert b"".join(got) == b"".join(pieces) and pieces[0] in got and pieces[2] in got


def test_a_body_that_stalls_gets_a_408_and_the_server_serves_on(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A client that stops mid-body gets Kubo's error body with 408 after READ_TIMEOUT (was a
    500 'internal error: TooSlowError' and a logged traceback), read without h11 (HTTP/1.1)
    or through it (HTTP/1.0, and a route that takes its body whole); the server answers on.
    A real in-process server, its timeout shortened."""
    monkeypatch.setattr(limits, "READ_TIMEOUT", 1.0)

    async def upload(request: Request) -> Response:
        assert request.chunks is not None
        seen = sum([len(piece) async for piece in request.chunks])
        return Response.json({"Bytes": seen})

    async def echo(request: Request) -> Response:
        return Response.json({"Bytes": len(request.body)})

    router = Router()
    router.add("POST", "/api/v0/up", upload, streaming=True)
    router.add("POST", "/api/v0/echo", echo)
    http = server.HttpServer("test", router, listen=["/ip4/127.0.0.1/tcp/0"])

    async def ask(port: int, head: bytes) -> bytes:
        with trio.fail_after(30):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                await stream.send_all(head)
                out = b""
                while chunk := await stream.receive_some(65536):
                    out += chunk
                return out

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(http.run)
            port = int(http.addresses[0].rsplit("/", 1)[1])
            for version, path, framing in (
                    (b"1.1", b"up", b"Content-Length: 1000"),
                    (b"1.1", b"up", b"Transfer-Encoding: chunked"),
                    (b"1.0", b"up", b"Content-Length: 1000"),
                    (b"1.1", b"echo", b"Content-Length: 1000")):
                answer = await ask(port, b"POST /api/v0/%s HTTP/%s\r\nHost: x\r\n%s\r\n\r\n"
                                   b"3\r\nabc" % (path, version, framing))
                assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
                assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["Message"] == \
                    "request body: nothing received for 1 s; request timed out"
            answer = await ask(port, b"POST /api/v0/up HTTP/1.1\r\nHost: x\r\n"
                               b"Connection: close\r\nContent-Length: 3\r\n\r\nabc")
            assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b'{"Bytes": 3}\n')
            nursery.cancel_scope.cancel()

    trio.run(main)
