"""Kubo's content-defined chunkers (rabin, buzhash): parsing, and the fast span hashing
checked against byte-at-a-time loops that follow boxo / whyrusleeping/chunker step by step.

No published chunk vector exists for either with Kubo's parameters (boxo's tests check only
bounds and reuse on random data), so besides the loops these tests check the invariants;
tests/interop/test_unixfs_cids.py compares rabin CIDs with ipfs-unixfs-importer, which runs
the same algorithm with another polynomial."""

from __future__ import annotations

import io
import random

import pytest

from ipfs_kit_node.unixfs.chunker import (
    BUZ_MAX,
    BUZ_MIN,
    BUZ_TABLE,
    KUBO_RABIN_POLY,
    Chunker,
    parse_chunker,
    split,
)
from ipfs_kit_node.unixfs.importer import import_bytes
from ipfs_kit_node.unixfs.params import ImportParams


def _data(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def rabin_loop(data: bytes, low: int, avg: int, high: int, poly: int) -> list[int]:
    """Chunk sizes as whyrusleeping/chunker makes them: after each cut the window is
    cleared and a 1 slid in, then min - 16 bytes are skipped unhashed; each later byte is
    slid through a 16-byte window (out table, then append with the mod table)."""
    deg = poly.bit_length() - 1

    def pmod(x: int) -> int:
        while x.bit_length() - 1 >= deg:
            x ^= poly << (x.bit_length() - 1 - deg)
        return x

    out_t = []
    for b in range(256):
        h = pmod(b)
        for _ in range(15):
            h = pmod(h << 8)
        out_t.append(h)
    mod_t = [pmod(b << deg) | (b << deg) for b in range(256)]
    mask = (1 << (avg.bit_length() - 1)) - 1
    sizes: list[int] = []
    i = 0
    window = [0] * 16
    while i < len(data):
        window[:] = [0] * 16
        wpos, digest = 0, 0

        def slide(b: int) -> None:
            nonlocal wpos, digest
            digest ^= out_t[window[wpos]]
            window[wpos] = b
            wpos = (wpos + 1) % 16
            digest = ((digest << 8) | b) ^ mod_t[digest >> (deg - 8)]

        slide(1)
        count = min(low - 16, len(data) - i)
        while i + count < len(data):
            slide(data[i + count])
            count += 1
            if count >= low and ((digest & mask) == 0 or count >= high):
                break
        sizes.append(count)
        i += count
    return sizes


def buzhash_loop(data: bytes) -> list[int]:
    """Chunk sizes as boxo's Buzhash.NextBytes makes them (state rotated left by one bit
    per byte, the byte 32 back XORed out, checked before each step from min - 32)."""
    def rotl(x: int) -> int:
        return ((x << 1) | (x >> 31)) & 0xFFFFFFFF

    sizes: list[int] = []
    pos = 0
    while pos < len(data):
        buf = data[pos:pos + BUZ_MAX]
        if len(buf) < BUZ_MIN:
            sizes.append(len(buf))
            break
        state = 0
        for i in range(BUZ_MIN - 32, BUZ_MIN):
            state = rotl(state) ^ BUZ_TABLE[buf[i]]
        i = BUZ_MIN - 32
        while i <= len(buf) - 33:
            if state & (1 << 17) - 1 == 0:
                break
            state = rotl(state) ^ BUZ_TABLE[buf[i]] ^ BUZ_TABLE[buf[i + 32]]
            i += 1
        sizes.append(i + 32)
        pos += i + 32
    return sizes


def sizes_of(data: bytes, chunker: Chunker) -> list[int]:
    return [len(c) for c in split(io.BytesIO(data), chunker)]


@pytest.mark.parametrize(("spec", "n"), [("rabin-16-64-128", 20_000),
                                         ("rabin-512-1024-2048", 300_000),
                                         ("rabin-100-4096-6000", 100_000),
                                         ("rabin-1000", 50_017)])
def test_rabin_matches_the_byte_loop(spec: str, n: int) -> None:
    c = parse_chunker(spec)
    data = _data(n, n)
    assert sizes_of(data, c) == rabin_loop(data, c.min, c.avg, c.max, KUBO_RABIN_POLY)


def test_rabin_on_low_entropy_data_hits_max() -> None:
    c = parse_chunker("rabin-64-256-512")
    data = b"\0" * 5000 + _data(3000, 1)
    assert sizes_of(data, c) == rabin_loop(data, 64, 256, 512, KUBO_RABIN_POLY)


@pytest.mark.parametrize("n", [0, 1, BUZ_MIN - 1, BUZ_MIN, BUZ_MIN + 40, 1_300_000])
def test_buzhash_matches_the_byte_loop(n: int) -> None:
    data = _data(n, 7)
    assert sizes_of(data, parse_chunker("buzhash")) == (buzhash_loop(data) if n else [])


def test_buzhash_bounds_and_locality() -> None:
    data = _data(6 << 20, 3)
    sizes = sizes_of(data, parse_chunker("buzhash"))
    assert sum(sizes) == len(data)
    assert all(BUZ_MIN <= s <= BUZ_MAX for s in sizes[:-1])
    edited = data[:2 << 20] + b"inserted" + data[2 << 20:]
    before = set(split(io.BytesIO(data), parse_chunker("buzhash")))
    after = list(split(io.BytesIO(edited), parse_chunker("buzhash")))
    # boundaries move only near the edit: all but a couple of chunks are shared
    assert len([c for c in after if c not in before]) <= 3


def test_parse_as_boxo() -> None:
    assert parse_chunker("rabin") == Chunker("rabin", min=87381, avg=262144, max=393216)
    assert parse_chunker("rabin-300000") == Chunker("rabin", min=100000, avg=300000,
                                                    max=450000)
    assert parse_chunker("rabin-min:100-avg:200-max:300") == Chunker("rabin", 0, 100, 200,
                                                                    300)
    assert parse_chunker("buzhash").kind == "buzhash"
    assert parse_chunker("size-1000") == Chunker("size", size=1000)
    for bad, why in [("rabin-10-20-30", "greater than 16"), ("rabin-200-100-300", "smaller"),
                     ("rabin-100-200-200", "smaller"), ("rabin-1-2", "format"),
                     ("rabin-avg:1-min:2-max:3", "label"), ("rabin-2000000", "maximum"),
                     ("fastcdc", "unrecognized"), ("size-0", "greater than 0")]:
        with pytest.raises(ValueError, match=why):
            parse_chunker(bad)


def test_kubo_params_use_the_chunker() -> None:
    data = _data(1 << 20, 5)
    rabin = ImportParams.kubo(chunker="rabin")
    buz = ImportParams.kubo(chunker="buzhash", cid_version=1)
    fixed = ImportParams.kubo()
    cids = {str(import_bytes(data, p)[1].cid) for p in (rabin, buz, fixed)}
    assert len(cids) == 3
    assert import_bytes(data, rabin)[1].cid == import_bytes(data, rabin)[1].cid
    leaves = [b for b in import_bytes(data, rabin)[0] if len(b.data) < 400_000]
    assert len(leaves) >= 3
