"""The Kubo driver against a SCRIPTED server that answers the way a failing Kubo does.

A real Kubo (js-ipfs in tests/pinning/test_kubo_jsipfs.py) does not misbehave on demand, so
this loopback or unix-socket server replays raw HTTP answers: error bodies, a stream error in
the trailer, a truncated stream, wrong JSON, silence.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import trio

from ipfs_kit_node.errors import (
    PinningError,
    RemoteProtocolError,
    RemoteRefusedError,
    RemoteUnavailableError,
)
from ipfs_kit_node.pinning.kubo import KuboClient

CID = "bafkreie5nqv6kd3qnfjupgvz34woh3oksc3iau6abmyajn7qvtf6d2ho34"


def chunked(*parts: bytes, trailer: bytes | None = b"X-Stream-Error: \r\n",
            end: bool = True) -> bytes:
    head = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked"
            b"\r\nTrailer: X-Stream-Error\r\nX-Stream-Output: 1\r\n\r\n")
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts)
    return head + body + ((b"0\r\n" + (trailer or b"") + b"\r\n") if end else b"")


def plain(status: str, body: bytes) -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def serve(nursery: trio.Nursery, answer: bytes | None, unix: Path | None = None) -> str:
    """Answer every request with ``answer`` (None: read it and say nothing)."""

    async def handle(stream: trio.abc.Stream) -> None:
        async with stream:
            await stream.receive_some(65536)
            if answer is None:
                await trio.sleep_forever()
            await stream.send_all(answer)

    if unix is not None:
        sock = trio.socket.socket(trio.socket.AF_UNIX)
        await sock.bind(str(unix))
        sock.listen()
        listener = trio.SocketListener(sock)
        nursery.start_soon(trio.serve_listeners, handle, [listener])
        return f"/unix{unix}"
    listeners = await nursery.start(partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
    return f"/ip4/127.0.0.1/tcp/{listeners[0].socket.getsockname()[1]}"


@pytest.mark.parametrize(("answer", "error", "message"), [
    (plain("500 Internal Server Error",
           b'{"Message":"invalid path \\"x\\": selected encoding not supported","Code":0,'
           b'"Type":"error"}'), PinningError, "selected encoding not supported"),
    (plain("400 Bad Request", b'{"Message":"argument \\"ipfs-path\\" is required","Code":1,'
                              b'"Type":"error"}'), RemoteRefusedError, "is required"),
    (plain("401 Unauthorized", b"Unauthorized"), RemoteRefusedError, "credentials"),
    (plain("502 Bad Gateway", b""), RemoteUnavailableError, "502"),
    (chunked(b'{"Progress": 3}\n'), RemoteProtocolError, "without Pins"),
    (chunked(b'{"Pins": ["' + CID.encode() + b'"'), RemoteProtocolError, "malformed JSON"),
    (chunked(b'{"Progress": 1}\n', end=False), RemoteProtocolError, "broke off"),
    (chunked(b'{"Progress": 1}\n', trailer=b"X-Stream-Error: context canceled\r\n"),
     RemoteProtocolError, "failed mid-stream: context canceled"),
])
async def test_bad_answers_to_pin_add(answer: bytes | None, error: type[Exception],
                                      message: str) -> None:
    async with trio.open_nursery() as nursery:
        api = await serve(nursery, answer)
        with pytest.raises(error, match=message):
            await KuboClient(api, timeout=1).pin_add(CID)
        nursery.cancel_scope.cancel()


async def test_silence_times_out() -> None:
    async with trio.open_nursery() as nursery:
        api = await serve(nursery, None)
        with pytest.raises(RemoteUnavailableError, match="did not answer id within 1 s"):
            await KuboClient(api, timeout=1).id()
        nursery.cancel_scope.cancel()


async def test_streamed_pin_ls_over_a_unix_socket(short_tmp: Path) -> None:
    lines = [f'{{"Cid":"{CID}","Type":"recursive","Name":""}}\n'.encode()] * 3
    async with trio.open_nursery() as nursery:
        api = await serve(nursery, chunked(*lines), unix=short_tmp / "kubo.sock")
        assert [p async for p in KuboClient(api).pin_ls()] == [(CID, "recursive")] * 3
        nursery.cancel_scope.cancel()


async def test_pin_add_reports_progress_as_kubo_streams_it() -> None:
    answer = chunked(b'{"Progress": 1}\n', b'{"Progress": 40}\n',
                     b'{"Pins": ["' + CID.encode() + b'"]}\n')
    seen: list[int] = []
    async with trio.open_nursery() as nursery:
        api = await serve(nursery, answer)
        assert await KuboClient(api).pin_add(CID, progress=seen.append) == [CID]
        nursery.cancel_scope.cancel()
    assert seen == [1, 40]
