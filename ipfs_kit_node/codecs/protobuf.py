"""The few protobuf wire-format pieces our codecs need (dag-pb, UnixFS Data, Bitswap): length-
delimited and varint fields only, strict, with errors that say what is wrong."""

from __future__ import annotations

from ..errors import CodecError
from .varint import VarintTooLong
from .varint import decode as varint_decode
from .varint import encode as varint


def read_varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    try:
        decoded = varint_decode(buf, pos)
    except VarintTooLong:
        raise CodecError("varint longer than 64 bits") from None
    if decoded is None:
        raise CodecError("truncated varint")
    return decoded


def fields(buf: bytes | memoryview, *, views: bool = False
           ) -> list[tuple[int, bytes | memoryview | int]]:
    """(field number, bytes or int) in wire order; other wire types are refused. With
    ``views`` a length-delimited field of a memoryview is a view of it, not a copy."""
    out: list[tuple[int, bytes | memoryview | int]] = []
    pos = 0
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 2:
            length, pos = read_varint(buf, pos)
            if pos + length > len(buf):
                raise CodecError(f"field {number} runs past the end of the message")
            piece = buf[pos:pos + length]
            out.append((number, piece if views and isinstance(piece, memoryview)
                        else bytes(piece)))
            pos += length
        elif wire == 0:
            value, pos = read_varint(buf, pos)
            out.append((number, value))
        else:
            raise CodecError(f"field {number} has wire type {wire}, which is not expected here")
    return out


def bytes_field(number: int, payload: bytes | memoryview) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def int_field(number: int, value: int) -> bytes:
    """A varint field; negative values as 64-bit two's complement, as protobuf int32 does."""
    return varint(number << 3) + varint(value & 0xFFFFFFFFFFFFFFFF)
