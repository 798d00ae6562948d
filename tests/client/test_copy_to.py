"""``Streamed.copy_to``: the client's own reading of a chunked body (cat and get write through
it), against a scripted HTTP/1.1 peer on a real unix socket. The peer is a stand-in, named as
such: the daemon cannot be made to split its chunks at chosen bytes, send trailers at will or
break a chunk in half."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ipfs_kit_node.client import Client
from ipfs_kit_node.errors import ApiError

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n"
Script = Callable[[socket.socket], None]


def chunked(*parts: bytes, trailers: bytes = b"") -> bytes:
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts)
    return body + b"0\r\n" + trailers + b"\r\n"


class ScriptedPeer:
    """Answers each request on a connection with the next script (a stand-in HTTP peer)."""

    def __init__(self, path: Path, scripts: list[Script]) -> None:
        self.scripts = scripts
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(4)
        self.connections = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.scripts:
            conn, _ = self.sock.accept()
            self.connections += 1
            with conn:
                while self.scripts:
                    request = b""
                    while b"\r\n\r\n" not in request:
                        data = conn.recv(65536)
                        if not data:
                            break
                        request += data
                    if not request:
                        break
                    self.scripts.pop(0)(conn)


def send_in_pieces(data: bytes, size: int) -> Script:
    def script(conn: socket.socket) -> None:
        for i in range(0, len(data), size):
            conn.sendall(data[i:i + size])
    return script


@pytest.fixture
def peer_at(short_tmp: Path) -> Iterator[Callable[[list[Script]], tuple[Client, ScriptedPeer]]]:
    made: list[Client] = []

    def make(scripts: list[Script]) -> tuple[Client, ScriptedPeer]:
        path = short_tmp / f"peer{len(made)}.sock"
        peer = ScriptedPeer(path, scripts)
        client = Client(str(path), repo=short_tmp, timeout=10)
        made.append(client)
        return client, peer

    yield make
    for client in made:
        client.close()


def copied(client: Client, tmp: Path) -> bytes:
    out = tmp / "out"
    with open(out, "wb") as f, client.stream("cat", {"arg": "x"}) as response:
        n = response.copy_to(f.fileno())
    data = out.read_bytes()
    assert n == len(data)
    return data


def test_any_split_of_the_stream_gives_the_body_and_the_connection_is_reused(
        peer_at: Callable[[list[Script]], tuple[Client, ScriptedPeer]], short_tmp: Path) -> None:
    parts = [os.urandom(n) for n in (1, 300_000, 7, 1 << 20, 70_000)]
    answer = HEAD + chunked(*parts, trailers=b"x-other: 1\r\n")
    sizes = [1, 5, 4096, 1 << 22]
    client, peer = peer_at([send_in_pieces(answer, n) for n in sizes]
                           + [send_in_pieces(HEAD + chunked(b"ok"), 1 << 16)])
    for _ in sizes:
        assert copied(client, short_tmp) == b"".join(parts)
    with client.stream("cat", {"arg": "x"}) as response:  # h11 takes over again
        assert response.read() == b"ok"
    assert peer.connections == 1


def test_a_stream_error_trailer_is_raised_and_the_connection_kept(
        peer_at: Callable[[list[Script]], tuple[Client, ScriptedPeer]], short_tmp: Path) -> None:
    failed = HEAD + chunked(b"partial", trailers=b"X-Stream-Error: block missing\r\n")
    client, peer = peer_at([send_in_pieces(failed, 3), send_in_pieces(HEAD + chunked(b"a"), 9)])
    with pytest.raises(ApiError, match="block missing"):
        copied(client, short_tmp)
    assert copied(client, short_tmp) == b"a"
    assert peer.connections == 1


@pytest.mark.parametrize("answer, message", [
    (HEAD + b"10\r\nshort", "broke off"),
    (HEAD + b"zz\r\n", "malformed"),
    (HEAD + b"0x10\r\n" + b"a" * 16 + b"\r\n0\r\n\r\n", "malformed"),
    (HEAD + b"2\r\nabc\r\n0\r\n\r\n", "malformed"),
])
def test_a_broken_or_malformed_body_is_an_error(
        peer_at: Callable[[list[Script]], tuple[Client, ScriptedPeer]], short_tmp: Path,
        answer: bytes, message: str) -> None:
    def script(conn: socket.socket) -> None:
        conn.sendall(answer)
        conn.shutdown(socket.SHUT_WR)
    client, _ = peer_at([script])
    with pytest.raises(ApiError, match=message):
        copied(client, short_tmp)


def test_an_answer_closing_its_connection_is_not_reused(
        peer_at: Callable[[list[Script]], tuple[Client, ScriptedPeer]], short_tmp: Path) -> None:
    closing = HEAD.replace(b"\r\n\r\n", b"\r\nconnection: close\r\n\r\n") + chunked(b"one")

    def close_after(conn: socket.socket) -> None:
        conn.sendall(closing)
        conn.shutdown(socket.SHUT_WR)
    client, peer = peer_at([close_after, send_in_pieces(HEAD + chunked(b"two"), 64)])
    assert copied(client, short_tmp) == b"one"
    assert copied(client, short_tmp) == b"two"  # on a new connection, not the closed one
    assert peer.connections == 2


def test_copy_after_reading_part_through_h11_gives_the_rest(
        peer_at: Callable[[list[Script]], tuple[Client, ScriptedPeer]], short_tmp: Path) -> None:
    parts = [b"first", os.urandom(5000), b"last"]
    client, _ = peer_at([send_in_pieces(HEAD + chunked(*parts), 1 << 16)])
    out = short_tmp / "out"
    with open(out, "wb") as f, client.stream("cat", {"arg": "x"}) as response:
        first = next(response.iter_bytes())
        response.copy_to(f.fileno())
    assert first + out.read_bytes() == b"".join(parts)
