"""Binary CIDs printed as Kubo prints them, with the standard library alone.

Apart from cid.py so that a command printing CIDs it made (``add``) does not import
multiformats: its codec tables and type checks cost ~25 ms at import, a tenth of what a
64 MiB ``add`` may take. cid.py re-exports ``cid_text``.
"""

from __future__ import annotations

import base64

B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
TEXT_CACHE = 4096
_TEXTS: dict[bytes, str] = {}


def cid_text(raw: bytes) -> str:
    """A binary CID as Kubo prints it (v0 in base58btc, v1 in base32), without a CID object.
    The caller vouches that ``raw`` is a CID (``cid.cid_from_bytes`` would accept it).

    The last few thousand are remembered: the gateway prints the same roots and files in
    every request's headers, and the stdlib's base32 encoder loops in Python."""
    text = _TEXTS.get(raw)
    if text is None:
        if len(_TEXTS) >= TEXT_CACHE:
            _TEXTS.clear()  # simple and safe from worker threads too
        text = _TEXTS[bytes(raw)] = _encode_text(raw)
    return text


def _encode_text(raw: bytes) -> str:
    if len(raw) == 34 and raw[0] == 0x12 and raw[1] == 0x20:
        n = int.from_bytes(raw, "big")
        out = []
        while n:
            n, digit = divmod(n, 58)
            out.append(B58[digit])
        return "".join(reversed(out))  # a v0 CID starts with 0x12: no leading zero bytes
    return "b" + base64.b32encode(raw).decode("ascii").lower().rstrip("=")
