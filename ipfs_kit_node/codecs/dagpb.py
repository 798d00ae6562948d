"""dag-pb decoding (the IPLD codec of UnixFS): PBNode { repeated PBLink Links = 2; bytes Data = 1 }.

A small strict protobuf reader rather than generated code: dag-pb's canonical form is narrow
(fields in order, no unknown fields), and errors must name the offending block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import CodecError
from .protobuf import bytes_field, fields, int_field

if TYPE_CHECKING:  # loaded where a link is decoded: encoding (add) needs none of it
    from multiformats import CID


@dataclass(frozen=True)
class PBLink:
    cid: CID | bytes  # a CID when decoded; encoders may pass its binary form
    name: str | None
    tsize: int | None


@dataclass(frozen=True)
class PBNode:
    links: tuple[PBLink, ...]
    data: bytes | None


def encode(links: list[PBLink] | tuple[PBLink, ...], data: bytes | None) -> bytes:
    """Canonical dag-pb: links first (in the order given), each Hash, Name, Tsize; then Data."""
    out = bytearray()
    for link in links:
        body = bytes_field(1, bytes(link.cid))
        if link.name is not None:
            body += bytes_field(2, link.name.encode("utf-8"))
        if link.tsize is not None:
            body += int_field(3, link.tsize)
        out += bytes_field(2, body)
    if data is not None:
        out += bytes_field(1, data)
    return bytes(out)


def decode(block: bytes, cid: str = "?") -> PBNode:
    """Decode a dag-pb block; a malformed one raises CodecError naming ``cid``."""
    try:
        links: list[PBLink] = []
        data: bytes | None = None
        for number, value in fields(block):
            if number == 2 and isinstance(value, bytes):
                if data is not None:
                    raise CodecError("Links after Data (not canonical dag-pb)")
                links.append(_decode_link(value))
            elif number == 1 and isinstance(value, bytes):
                if data is not None:
                    raise CodecError("duplicate Data field")
                data = value
            else:
                raise CodecError(f"unexpected PBNode field {number}")
        return PBNode(tuple(links), data)
    except CodecError as exc:
        raise CodecError(f"malformed dag-pb block {cid}: {exc}") from None


def _decode_link(buf: bytes) -> PBLink:
    from multiformats import CID

    cid: CID | None = None
    name: str | None = None
    tsize: int | None = None
    for number, value in fields(buf):
        if number == 1 and isinstance(value, bytes):
            try:
                cid = CID.decode(value)
            except Exception as exc:
                raise CodecError(f"link hash is not a CID ({exc})") from None
        elif number == 2 and isinstance(value, bytes):
            try:
                name = value.decode("utf-8")
            except UnicodeDecodeError:
                raise CodecError("link name is not UTF-8") from None
        elif number == 3 and isinstance(value, int):
            tsize = value
        else:
            raise CodecError(f"unexpected PBLink field {number}")
    if cid is None:
        raise CodecError("link without a Hash")
    return PBLink(cid, name, tsize)
