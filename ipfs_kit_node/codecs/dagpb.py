"""dag-pb decoding (the IPLD codec of UnixFS): PBNode { repeated PBLink Links = 2; bytes Data = 1 }.

A small strict protobuf reader rather than generated code: dag-pb's canonical form is narrow
(fields in order, no unknown fields), and errors must name the offending block.
"""

from __future__ import annotations

from dataclasses import dataclass

from multiformats import CID

from ..errors import CodecError
from .varint import VarintTooLong
from .varint import decode as varint_decode
from .varint import encode as varint


@dataclass(frozen=True)
class PBLink:
    cid: CID | bytes  # a CID when decoded; encoders may pass its binary form
    name: str | None
    tsize: int | None


@dataclass(frozen=True)
class PBNode:
    links: tuple[PBLink, ...]
    data: bytes | None


def read_varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    try:
        decoded = varint_decode(buf, pos)
    except VarintTooLong:
        raise CodecError("varint longer than 64 bits") from None
    if decoded is None:
        raise CodecError("truncated varint")
    return decoded


def fields(buf: bytes | memoryview) -> list[tuple[int, bytes | int]]:
    out: list[tuple[int, bytes | int]] = []
    pos = 0
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 2:
            length, pos = read_varint(buf, pos)
            if pos + length > len(buf):
                raise CodecError(f"field {number} runs past the end of the block")
            out.append((number, bytes(buf[pos:pos + length])))
            pos += length
        elif wire == 0:
            value, pos = read_varint(buf, pos)
            out.append((number, value))
        else:
            raise CodecError(f"field {number} has wire type {wire}, not allowed in dag-pb")
    return out



def _bytes_field(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def encode(links: list[PBLink] | tuple[PBLink, ...], data: bytes | None) -> bytes:
    """Canonical dag-pb: links first (in the order given), each Hash, Name, Tsize; then Data."""
    out = bytearray()
    for link in links:
        body = _bytes_field(1, bytes(link.cid))
        if link.name is not None:
            body += _bytes_field(2, link.name.encode("utf-8"))
        if link.tsize is not None:
            body += varint(3 << 3) + varint(link.tsize)
        out += _bytes_field(2, body)
    if data is not None:
        out += _bytes_field(1, data)
    return bytes(out)


def decode(block: bytes, cid: str = "?") -> PBNode:
    """Decode a dag-pb block; a malformed one raises CodecError naming ``cid``."""
    try:
        links: list[PBLink] = []
        data: bytes | None = None
        for number, value in fields(block):
            if number == 2 and isinstance(value, bytes):
                if data is not None:
                    raise CodecError("Links after Data (not canonical dag-pb)")
                links.append(_decode_link(value))
            elif number == 1 and isinstance(value, bytes):
                if data is not None:
                    raise CodecError("duplicate Data field")
                data = value
            else:
                raise CodecError(f"unexpected PBNode field {number}")
        return PBNode(tuple(links), data)
    except CodecError as exc:
        raise CodecError(f"malformed dag-pb block {cid}: {exc}") from None


def _decode_link(buf: bytes) -> PBLink:
    cid: CID | None = None
    name: str | None = None
    tsize: int | None = None
    for number, value in fields(buf):
        if number == 1 and isinstance(value, bytes):
            try:
                cid = CID.decode(value)
            except Exception as exc:
                raise CodecError(f"link hash is not a CID ({exc})") from None
        elif number == 2 and isinstance(value, bytes):
            try:
                name = value.decode("utf-8")
            except UnicodeDecodeError:
                raise CodecError("link name is not UTF-8") from None
        elif number == 3 and isinstance(value, int):
            tsize = value
        else:
            raise CodecError(f"unexpected PBLink field {number}")
    if cid is None:
        raise CodecError("link without a Hash")
    return PBLink(cid, name, tsize)
