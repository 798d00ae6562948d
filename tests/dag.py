"""Tiny block builders for tests: raw blocks and hand-encoded dag-pb nodes."""

from __future__ import annotations

import os

from multiformats import CID, multihash


def raw_block(data: bytes | None = None, size: int = 1024) -> tuple[CID, bytes]:
    data = os.urandom(size) if data is None else data
    return CID("base32", 1, "raw", multihash.digest(data, "sha2-256")), data


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def dagpb_block(links: list[tuple[CID, int]], data: bytes = b"\x08\x02",
                version: int = 1) -> tuple[CID, bytes]:
    """A PBNode with links (Hash, Name "", Tsize) then Data; CIDv0 or v1."""
    body = b"".join(
        _field(2, _field(1, bytes(cid)) + _field(2, b"") + _varint(3 << 3) + _varint(tsize))
        for cid, tsize in links
    ) + _field(1, data)
    digest = multihash.digest(body, "sha2-256")
    cid = CID("base58btc", 0, "dag-pb", digest) if version == 0 else \
        CID("base32", 1, "dag-pb", digest)
    return cid, body
