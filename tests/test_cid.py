"""The fast binary-CID path agrees with multiformats on every CID, and refuses what it refuses."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multiformats import CID, multihash, varint

from ipfs_kit_node.cid import (
    MAX_CID_LENGTH,
    cid_bytes,
    cid_from_bytes,
    cid_from_text,
    cid_text,
    to_cid,
)
from ipfs_kit_node.errors import InvalidCidError


@pytest.mark.parametrize("cid", [
    CID("base32", 1, "raw", multihash.digest(b"x", "sha2-256")),
    CID("base58btc", 0, "dag-pb", multihash.digest(b"x", "sha2-256")),
    CID("base32", 1, "dag-cbor", multihash.digest(b"x", "sha2-512")),
    CID("base32", 1, "raw", multihash.digest(b"x", "identity")),
    CID("base32", 1, "dag-pb", multihash.digest(b"x", "blake2b-256"))])
def test_fast_cid_matches_the_public_decoder(cid: CID) -> None:
    fast, slow = cid_from_bytes(bytes(cid)), to_cid(bytes(cid))
    assert fast == slow and str(fast) == str(slow) and fast.base == slow.base
    assert cid_text(bytes(cid)) == str(slow)


@pytest.mark.parametrize("bad", [
    b"", b"\x01", b"\x02\x55\x12\x20" + b"a" * 32, b"\x01\x55\x12\x21" + b"a" * 32,
    b"\x01\x55\x12\x20abc", b"\x01\xff\xff\x03\x12\x20" + b"a" * 32,
    b"\x01\x55\xff\xff\x03\x03abc"])
def test_fast_cid_refuses_what_the_public_decoder_refuses(bad: bytes) -> None:
    with pytest.raises(InvalidCidError):
        to_cid(bad)
    with pytest.raises(InvalidCidError):
        cid_from_bytes(bad)


def test_a_huge_cid_string_is_refused_at_once_and_not_echoed() -> None:
    with pytest.raises(InvalidCidError) as caught:
        to_cid("Q" * 100_000)
    assert str(MAX_CID_LENGTH) in str(caught.value) and len(str(caught.value)) < 300


def _varint(n: int, minimal: bool) -> bytes:
    out = bytearray(varint.encode(n))
    if not minimal:  # the same value with a redundant zero continuation byte
        out[-1] |= 0x80
        out.append(0)
    return bytes(out)


_field = st.tuples(st.sampled_from([0, 1, 2, 0x12, 0x55, 0x70, 0x71, 0xB220]), st.booleans())


@settings(max_examples=3000, deadline=None)
@given(version=st.tuples(st.sampled_from([0, 1, 2]), st.booleans()), codec=_field,
       hashfun=_field, length=st.tuples(st.sampled_from([0, 20, 32, 64, 5]), st.booleans()),
       body=st.binary(max_size=70), cut=st.one_of(st.none(), st.integers(0, 80)))
def test_fast_cid_agrees_with_the_public_decoder_on_any_input(
        version: tuple[int, bool], codec: tuple[int, bool], hashfun: tuple[int, bool],
        length: tuple[int, bool], body: bytes, cut: int | None) -> None:
    """Truncated, non-minimal, unknown, wrong-length: accepted or refused exactly alike."""
    raw = b"".join(_varint(n, not odd) for n, odd in (version, codec, hashfun, length)) + body
    raw = raw if cut is None else raw[:cut]

    def outcome(decode: Callable[[bytes], CID]) -> tuple[object, ...]:
        try:
            cid = decode(raw)
        except InvalidCidError:
            return ("refused",)
        return bytes(cid), str(cid)

    assert outcome(cid_from_bytes) == outcome(to_cid)


@settings(max_examples=1500, deadline=None)
@given(text=st.one_of(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz234567=B", max_size=70).map(lambda t: "b" + t),
    st.text(alphabet="123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz0", min_size=44,
            max_size=44).map(lambda t: "Qm" + t),
    st.builds(lambda raw: str(to_cid(raw)), st.sampled_from([
        bytes(CID("base32", 1, "raw", multihash.digest(b"x", "sha2-256"))),
        bytes(CID("base58btc", 0, "dag-pb", multihash.digest(b"y", "sha2-256"))),
        bytes(CID("base32", 1, "dag-cbor", multihash.digest(b"z", "identity")))]))))
def test_fast_text_cid_agrees_with_the_public_decoder(text: str) -> None:
    """The gateway's fast parser of a request's CID: same CID, same errors."""
    def outcome(decode: Callable[[str], CID]) -> tuple[object, ...]:
        try:
            cid = decode(text)
        except InvalidCidError:
            return ("refused",)
        return bytes(cid), str(cid), cid.base.name

    assert outcome(cid_from_text) == outcome(to_cid)
    if outcome(to_cid)[0] != "refused":
        assert cid_bytes(to_cid(text)) == bytes(to_cid(text))
