"""Unsigned LEB128 varints, as protobuf fields and libp2p length prefixes use them."""

from __future__ import annotations

Bytes = bytes | bytearray | memoryview


class VarintTooLong(ValueError):
    """More continuation bytes than the caller allows."""


def encode(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode(buf: Bytes, pos: int, max_bytes: int = 10) -> tuple[int, int] | None:
    """(value, position after it), or None when ``buf`` ends first (wait for more bytes).

    Raises VarintTooLong when it runs past ``max_bytes`` bytes.
    """
    result = shift = 0
    for i in range(max_bytes):
        if pos + i >= len(buf):
            return None
        byte = buf[pos + i]
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos + i + 1
        shift += 7
    raise VarintTooLong(f"varint longer than {max_bytes} bytes")
