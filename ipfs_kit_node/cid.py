"""CIDs from text, bytes or CID objects, printed as Kubo and Helia print them."""

from __future__ import annotations

import base64
from typing import Any

from multiformats import CID, multibase, multicodec, multihash

from .cidtext import B58
from .cidtext import cid_text as cid_text  # re-exported: its home keeps multiformats out
from .codecs.varint import decode as _varint
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


# multiformats checks every argument with typing_validation: CID.decode costs ~150-200 µs, more
# than hashing the 256 KiB block it names, and a 4 MB Bitswap message or a 88,000-entry folder
# holds enough CIDs to freeze the node for seconds. A binary CID whose structure is checked here
# is built through the unvalidated constructor CID.decode itself ends in (~3 µs). It is private
# API: if a release drops it, or a code is unknown, CID.decode runs instead, with its errors.
_NEW_INSTANCE: Any = getattr(CID, "_new_instance", None)
_BASE32, _BASE58 = multibase.get("base32"), multibase.get("base58btc")
_DAG_PB, _SHA2_256 = multicodec.get("dag-pb"), multihash.get("sha2-256")
_PARTS: dict[tuple[int, int], tuple[Any, Any]] = {}
_B58 = B58


def cid_from_bytes(raw: bytes) -> CID:
    """``to_cid`` for a binary CID, ~50 times faster, with the same checks (version, known
    codec and hash function, digest length): InvalidCidError when one fails."""
    if _NEW_INSTANCE is None:
        return to_cid(raw)
    raw = bytes(raw)
    if len(raw) == 34 and raw[0] == 0x12 and raw[1] == 0x20:
        return _NEW_INSTANCE(CID, _BASE58, 0, _DAG_PB, _SHA2_256, raw)  # type: ignore[no-any-return]
    try:
        version, pos = _minimal_varint(raw, 0)
        code, pos = _minimal_varint(raw, pos)
        hash_code, at = _minimal_varint(raw, pos)
        length, at = _minimal_varint(raw, at)
        if version != 1 or len(raw) - at != length:
            return to_cid(raw)  # raises InvalidCidError, naming what is wrong
        parts = _PARTS.get((code, hash_code))
        if parts is None:
            parts = (multicodec.get(code=code), multihash.get(code=hash_code))
            _PARTS[code, hash_code] = parts
    except (ValueError, KeyError):
        return to_cid(raw)
    return _NEW_INSTANCE(CID, _BASE32, 1, parts[0], parts[1], raw[pos:])  # type: ignore[no-any-return]


def _minimal_varint(raw: bytes, pos: int) -> tuple[int, int]:
    """A varint as multiformats (and Kubo) read one: present, at most 9 bytes, minimal."""
    decoded = _varint(raw, pos, 9)
    if decoded is None:
        raise ValueError("truncated varint")
    if decoded[1] - pos > 1 and raw[decoded[1] - 1] == 0:
        raise ValueError("varint not minimally encoded")
    return decoded


_B58_INDEX = {c: i for i, c in enumerate(_B58)}


def cid_from_text(text: str) -> CID:
    """``to_cid`` for text, fast for the two forms Kubo prints (v0 ``Qm...`` base58btc, v1
    ``b...`` base32): CID.decode of text costs ~0.5-1 ms (the gateway parses one a request).
    Text that does not print back exactly (another base, upper case, padding) goes through
    ``to_cid``, with its checks and errors."""
    raw: bytes | None = None
    try:
        if len(text) == 46 and text.startswith("Qm"):
            n = 0
            for char in text:
                n = n * 58 + _B58_INDEX[char]
            raw = n.to_bytes(34, "big")
        elif 2 < len(text) <= MAX_CID_LENGTH and text[0] == "b" and text.islower():
            body = text[1:].upper()
            raw = base64.b32decode(body + "=" * (-len(body) % 8))
    except (KeyError, OverflowError, ValueError):
        raw = None
    if raw is not None:
        try:
            cid = cid_from_bytes(raw)
        except InvalidCidError:
            cid = None
        if cid is not None and cid_text(bytes(cid)) == text:
            return cid
    return to_cid(text)


_V1_PREFIXES: dict[int, bytes] = {}


def cid_bytes(cid: CID) -> bytes:
    """``bytes(cid)`` without multiformats' validated varint encoder (~15 µs a call, and the
    gateway asks for a few per request)."""
    if cid.version == 0:
        return bytes(cid.digest)
    code = cid.codec.code
    prefix = _V1_PREFIXES.get(code)
    if prefix is None:
        prefix = _V1_PREFIXES[code] = bytes(cid)[:-len(cid.digest)]
    return prefix + bytes(cid.digest)
