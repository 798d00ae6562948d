"""CIDs from text, bytes or CID objects, printed as Kubo and Helia print them."""

from __future__ import annotations

from multiformats import CID

from .errors import InvalidCidError

CidLike = CID | str | bytes

# Longer than any CID we accept (an identity CID inlines at most a few hundred bytes): refusing
# early keeps a 100 KB "CID" from costing a quadratic base decode.
MAX_CID_LENGTH = 2048


def to_cid(value: CidLike) -> CID:
    """A CID from text, bytes or a CID; v1 CIDs print in base32 as Kubo and Helia do."""
    if not isinstance(value, CID):
        if len(value) > MAX_CID_LENGTH:
            raise InvalidCidError(f"{_preview(value)} is not a CID (over {MAX_CID_LENGTH} "
                                  "characters)")
        text = value
        try:
            value = CID.decode(text)
        except Exception as exc:
            raise InvalidCidError(f"{_preview(text)} is not a CID ({exc})") from None
    if value.version == 1 and value.base.name != "base32":
        value = value.set(base="base32")
    return value


def _preview(value: str | bytes, limit: int = 80) -> str:
    """The value as an error message shows it: quoted, and cut short if long."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(value)} long)"
