"""The fast binary-CID path agrees with multiformats on every CID, and refuses what it refuses."""

from __future__ import annotations

import pytest
from multiformats import CID, multihash

from ipfs_kit_node.cid import MAX_CID_LENGTH, cid_from_bytes, cid_text, to_cid
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
