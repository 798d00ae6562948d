"""The sans-IO multipart parser: any split of the bytes gives the same parts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipfs_kit_node.api.rpc.multipart import (
    MultipartParser,
    PartData,
    PartEnd,
    PartHeaders,
    body_data,
    boundary_of,
)
from ipfs_kit_node.errors import ApiError

BOUNDARY = b"-----------------------------12345"


def encode(parts: list[tuple[str, str, bytes]]) -> bytes:
    out = b""
    for i, (name, kind, data) in enumerate(parts):
        out += (b"\r\n" if i else b"") + b"--" + BOUNDARY + b"\r\n"
        out += f'Content-Disposition: form-data; name="file-{i}"; filename="{name}"\r\n' \
               f"Content-Type: {kind}\r\n\r\n".encode() + data
    return out + b"\r\n--" + BOUNDARY + b"--\r\n"


def parse(body: bytes, cuts: list[int]) -> list[tuple[str, str, bytes]]:
    parser = MultipartParser(BOUNDARY)
    out: list[tuple[str, str, bytes]] = []
    data = b""
    pos = 0
    for cut in [*sorted(cuts), len(body)]:
        for event in parser.feed(body[pos:cut]):
            if isinstance(event, PartHeaders):
                name, kind = event.filename, event.kind
            elif isinstance(event, PartData):
                data += event.data
            else:
                assert isinstance(event, PartEnd)
                out.append((name, kind, data))
                data = b""
        pos = max(pos, cut)
    parser.close()
    return out


PARTS = [("dir", "application/x-directory", b""),
         ("dir%2Fa%20b.txt", "application/octet-stream", b"hello\r\n--not-the-boundary\r\n"),
         ("dir%2Flink", "application/symlink", b"a b.txt"),
         ("dir%2Fempty", "application/octet-stream", b"")]


@settings(deadline=None)  # a loaded CI core: one slow example is no bug
@given(st.lists(st.integers(min_value=0, max_value=len(encode(PARTS))), max_size=20))
def test_any_split_gives_the_same_parts(cuts: list[int]) -> None:
    assert parse(encode(PARTS), cuts) == [
        ("dir", "directory", b""), ("dir/a b.txt", "file", b"hello\r\n--not-the-boundary\r\n"),
        ("dir/link", "symlink", b"a b.txt"), ("dir/empty", "file", b"")]


def test_refusals() -> None:
    with pytest.raises(ApiError):
        boundary_of("application/json")
    with pytest.raises(ApiError):
        boundary_of("multipart/form-data")
    parser = MultipartParser(BOUNDARY)
    parser.feed(encode(PARTS)[:-10])
    with pytest.raises(ApiError, match="before its closing boundary"):
        parser.close()
    assert body_data(encode(PARTS[1:2]), "multipart/form-data; boundary=" + BOUNDARY.decode()) \
        == PARTS[1][2]
    assert body_data(b"raw", None) == b"raw"


@settings(deadline=None)  # a loaded CI core: one slow example is no bug
@given(st.lists(st.integers(min_value=0, max_value=60), max_size=6))
def test_a_part_without_headers_keeps_its_blank_lines(cuts: list[int]) -> None:
    body = b"--" + BOUNDARY + b"\r\n\r\nline one\r\n\r\nline two\r\n--" + BOUNDARY + b"--\r\n"
    got = parse(body, cuts)
    assert [data for _, _, data in got] == [b"line one\r\n\r\nline two"]
