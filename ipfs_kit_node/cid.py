"""CIDs from text, bytes or CID objects, printed as Kubo and Helia print them."""

from __future__ import annotations

from multiformats import CID

from .errors import InvalidCidError

CidLike = CID | str | bytes


def to_cid(value: CidLike) -> CID:
    """A CID from text, bytes or a CID; v1 CIDs print in base32 as Kubo and Helia do."""
    if not isinstance(value, CID):
        try:
            value = CID.decode(value)
        except Exception as exc:
            raise InvalidCidError(f"{value!r} is not a CID ({exc})") from None
    if value.version == 1 and value.base.name != "base32":
        value = value.set(base="base32")
    return value
