"""The sync client's own HTTP/1.1 reader (client/_h1.py) against h11, which the daemon's server
and AsyncClient use: the same answers, split at any bytes, give the same events; what h11
refuses, the reader refuses. Sans-IO: no sockets here (tests/client/test_copy_to.py and every
CLI test drive it over real ones)."""

from __future__ import annotations

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipfs_kit_node.client._h1 import (
    CONNECTION_CLOSED,
    End,
    Head,
    ProtocolError,
    ResponseReader,
    request_bytes,
)

GOOD = [
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n"
    b'{"ID":"x"}\n',
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Stream-Error\r\n\r\n"
    b"5\r\nhello\r\n3;ext=1\r\nabc\r\n0\r\nX-Stream-Error: disk full\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
    b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
    b"HTTP/1.0 200 OK\r\nx-a:  spaced value \t\r\n\r\nuntil the close",
    b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the close too",
]
BAD = [
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabcXY",
    b"HTTP/1.1 2000 OK\r\n\r\n",
    b"HTTP/2 200 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ncontent-length: 1x\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort",  # then the close
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel",  # then the close
    b"HTTP/1.1 200 O",  # then the close
    b"HTTP/1.1 200 OK\r\nx\xff: 1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nx a: 1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
]


def h11_events(data: bytes) -> list[object]:
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="POST", target="/", headers=[("host", "x"),
                                                              ("content-length", "0")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(data)
    conn.receive_data(b"")
    out: list[object] = []
    while True:
        event = conn.next_event()
        if isinstance(event, h11.InformationalResponse):
            continue
        if isinstance(event, h11.Response):
            out.append(("head", event.status_code, list(event.headers), event.http_version))
        elif isinstance(event, h11.Data):
            out.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            out.append(("end", list(event.headers)))
        elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            return _joined(out)
        elif event is h11.NEED_DATA:
            raise AssertionError("h11 needs data after the close")


def our_events(pieces: list[bytes]) -> list[object]:
    reader = ResponseReader()
    out: list[object] = []
    for piece in [*pieces, b""]:
        reader.receive(piece)
        while (event := reader.next_event()) is not None:
            if event is CONNECTION_CLOSED:
                return _joined(out)
            if isinstance(event, Head):
                out.append(("head", event.status, event.headers, event.http_version))
            elif isinstance(event, End):
                out.append(("end", event.trailers))
                if not reader.keep_alive:
                    return _joined(out)
            else:
                assert isinstance(event, bytes)
                out.append(event)
    return _joined(out)


def _joined(events: list[object]) -> list[object]:
    """Body pieces joined: where a body is cut depends on how the bytes arrived."""
    out: list[object] = []
    for event in events:
        if isinstance(event, bytes) and out and isinstance(out[-1], bytes):
            out[-1] += event
        elif event != b"":
            out.append(event)
    return out


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at ``cuts``, as recv() hands it over (never an empty piece: that is EOF)."""
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    return [p for p in pieces if p]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(GOOD), st.lists(st.integers(min_value=0), max_size=8))
def test_good_answers_read_as_h11_reads_them(data: bytes, cuts: list[int]) -> None:
    expected = h11_events(data)
    assert our_events(split(data, cuts)) == expected


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(BAD), st.lists(st.integers(min_value=0), max_size=6))
def test_what_h11_refuses_is_refused(data: bytes, cuts: list[int]) -> None:
    with pytest.raises(h11.RemoteProtocolError):
        h11_events(data)
    with pytest.raises(ProtocolError):
        our_events(split(data, cuts))


def test_answers_in_turn_on_one_connection() -> None:
    reader = ResponseReader()
    reader.receive(GOOD[0] + GOOD[1] + GOOD[3])
    kinds = []
    while (event := reader.next_event()) is not None:
        kinds.append(type(event).__name__)
    assert kinds == ["Head", "bytes", "End", "Head", "bytes", "bytes", "End", "Head", "End"]
    assert reader.keep_alive and not reader.in_response


def test_a_close_before_any_answer_is_told_apart_from_a_broken_one() -> None:
    reader = ResponseReader()
    reader.receive(b"")
    assert reader.next_event() is CONNECTION_CLOSED
    reader = ResponseReader()
    reader.receive(GOOD[0][:60])
    reader.receive(b"")
    with pytest.raises(ProtocolError) as info:
        reader.next_event()
    assert not info.value.in_body
    reader = ResponseReader()
    reader.receive(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort")
    reader.receive(b"")
    assert isinstance(reader.next_event(), Head)
    assert reader.next_event() == b"short"
    with pytest.raises(ProtocolError) as info:
        reader.next_event()
    assert info.value.in_body


def test_requests_never_carry_a_line_break_into_the_head() -> None:
    assert request_bytes("POST", "/api/v0/id", [("host", "localhost")]) == \
        b"POST /api/v0/id HTTP/1.1\r\nhost: localhost\r\n\r\n"
    for bad in ("/x\r\nInjected: 1", "/x\nY", "/x\rY", "/x\0"):
        with pytest.raises(ValueError):
            request_bytes("POST", bad, [])
    with pytest.raises(ValueError):
        request_bytes("POST", "/", [("x-a", "1\r\nx-b: 2")])


def test_any_number_of_interim_answers_is_skipped() -> None:
    """A peer may send many 100 Continue heads: skipped in a loop (recursion overflowed)."""
    reader = ResponseReader()
    reader.receive(b"HTTP/1.1 100 Continue\r\n\r\n" * 20_000 + GOOD[0])
    head = reader.next_event()
    assert isinstance(head, Head) and head.status == 200
