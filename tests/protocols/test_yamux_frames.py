"""The Yamux frame reader (ipfs_kit_node/transport/frames.py), sans-IO: frames come out whole
and in order however the bytes are split across reads (at any byte, several frames per read),
a DATA frame over the limit is refused at its header, and the payload views stay valid until
the next feed."""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipfs_kit_node.errors import CodecError
from ipfs_kit_node.transport.frames import HEADER_SIZE, FrameReader

FMT = "!BBHII"

frame_st = st.one_of(
    st.tuples(st.just(0), st.integers(0, 15), st.integers(0, 2**32 - 1),
              st.binary(max_size=300)),  # DATA: length is the body's
    st.tuples(st.integers(1, 3), st.integers(0, 15), st.integers(0, 2**32 - 1),
              st.integers(0, 2**32 - 1)),  # WINDOW_UPDATE, PING, GO_AWAY: length is a value
)


def encode(typ: int, flags: int, sid: int, body: bytes | int) -> bytes:
    if isinstance(body, bytes):
        return struct.pack(FMT, 0, typ, flags, sid, len(body)) + body
    return struct.pack(FMT, 0, typ, flags, sid, body)


def expected(typ: int, flags: int, sid: int, body: bytes | int) -> tuple[int, int, int, int,
                                                                         bytes]:
    if isinstance(body, bytes):
        return (typ, flags, sid, len(body), body)
    return (typ, flags, sid, body, b"")


def read_all(reader: FrameReader, pieces: list[bytes]) -> list[tuple[int, int, int, int,
                                                                     bytes]]:
    got = []
    for piece in pieces:
        for f in reader.feed(piece):
            got.append((f.type, f.flags, f.stream_id, f.length, bytes(f.payload)))
    return got


def split(wire: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(wire) + 1) for c in cuts})
    bounds = [0, *points, len(wire)]
    return [wire[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=300, deadline=None)
@given(st.lists(frame_st, max_size=12), st.lists(st.integers(0, 10**6), max_size=20))
def test_frames_whole_and_in_order_on_any_split(frames: list[tuple[int, int, int, bytes | int]],
                                                cuts: list[int]) -> None:
    wire = b"".join(encode(*f) for f in frames)
    reader = FrameReader()
    assert read_all(reader, split(wire, cuts)) == [expected(*f) for f in frames]
    assert not reader.pending


@settings(max_examples=100, deadline=None)
@given(st.lists(frame_st, min_size=1, max_size=6))
def test_one_byte_at_a_time_and_all_at_once(frames: list[tuple[int, int, int, bytes | int]]
                                            ) -> None:
    wire = b"".join(encode(*f) for f in frames)
    want = [expected(*f) for f in frames]
    assert read_all(FrameReader(), [wire[i:i + 1] for i in range(len(wire))]) == want
    assert read_all(FrameReader(), [wire]) == want


def test_pending_while_a_frame_is_incomplete() -> None:
    reader = FrameReader()
    wire = encode(0, 0, 1, b"x" * 100)
    assert reader.feed(wire[:5]) == [] and reader.pending
    assert reader.feed(wire[5:50]) == [] and reader.pending
    (frame,) = reader.feed(wire[50:])
    assert bytes(frame.payload) == b"x" * 100 and not reader.pending


def test_payload_views_survive_the_buffer_being_reused() -> None:
    reader = FrameReader()
    first = encode(0, 0, 1, b"a" * 40)
    second = encode(0, 0, 3, b"b" * 40)
    reader.feed(first[:20])
    (done,) = reader.feed(first[20:] + second[:30])  # completes one, holds part of the next
    (later,) = reader.feed(second[30:])
    assert bytes(done.payload) == b"a" * 40 and bytes(later.payload) == b"b" * 40


@pytest.mark.parametrize("split_at", [0, 3, HEADER_SIZE])
def test_an_oversized_data_frame_is_refused_at_its_header(split_at: int) -> None:
    reader = FrameReader(max_data=1000)
    header = struct.pack(FMT, 0, 0, 0, 1, 1001)
    with pytest.raises(CodecError, match="1001"):
        if split_at:
            reader.feed(encode(1, 0, 1, 5) + header[:split_at])
            reader.feed(header[split_at:])
        else:
            reader.feed(header)


def test_the_limit_is_inclusive_and_other_types_carry_no_body() -> None:
    reader = FrameReader(max_data=1000)
    (data,) = reader.feed(encode(0, 0, 1, b"z" * 1000))
    assert data.length == 1000
    (update,) = reader.feed(encode(1, 0, 1, 2**32 - 1))  # a huge window value, no body
    assert update.length == 2**32 - 1 and update.payload == b""
