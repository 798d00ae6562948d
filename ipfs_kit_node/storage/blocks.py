"""CIDs as the store sees them: keyed by multihash, checked by re-hashing.

The same bytes under CIDv0 and CIDv1 (or under dag-pb and raw codecs) are one block: the key is
the multihash. Verification hashes the bytes with the CID's own hash function.
"""

from __future__ import annotations

import hashlib

from multiformats import CID, multihash

from ..cid import CidLike, to_cid
from ..errors import HashMismatchError

__all__ = ["CidLike", "cid_of_key", "hash_matches", "key_of", "to_cid", "verify"]

_SHA2_256 = 0x12

def key_of(cid: CID) -> bytes:
    """The store key: the CID's multihash bytes."""
    return bytes(cid.digest)


def hash_matches(key: bytes, data: bytes | memoryview) -> bool:
    # Fast path for the hash nearly every IPFS block uses.
    if key[0] == _SHA2_256 and len(key) == 34 and key[1] == 32:
        return hashlib.sha256(data).digest() == key[2:]
    try:
        return bytes(multihash.from_digest(key).digest(bytes(data))) == key
    except Exception:  # an unknown hash function cannot be verified: refuse it
        return False


def verify(cid: CID, data: bytes | memoryview) -> None:
    """Raise HashMismatchError unless ``data`` hashes to ``cid``."""
    if not hash_matches(key_of(cid), data):
        raise HashMismatchError(
            f"bytes do not match CID {cid}: the block is corrupt or was sent under the wrong CID"
        )


def cid_of_key(key: bytes, codec: str = "raw") -> CID:
    """A CIDv1 for a bare multihash (the disk tier knows no codec, like Kubo's flatfs)."""
    return CID("base32", 1, codec, key)
