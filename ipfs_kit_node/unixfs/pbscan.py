"""dag-pb read lazily, for walking big or hostile DAGs without holding the event loop.

``codecs.dagpb.decode`` builds every link's CID object up front (~100 µs each with
multiformats): a 5,000-entry folder cost half a second before its first entry, and the same
again to print the CIDs. Here a node is split once (links counted and skipped, Data found),
links are read one at a time from their offset as binary CIDs (``cid.cid_from_bytes`` and
``cid.cid_text`` turn them into CID objects or text when needed). The structure is checked as
strictly as ``dagpb.decode`` checks it; errors name the block (``cid`` is anything that prints
as the block's CID: formatted only for an error).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..codecs.protobuf import read_varint
from ..errors import CodecError

DAG_PB, RAW = 0x70, 0x55


def _varint(block: bytes | memoryview, pos: int) -> tuple[int, int]:
    """``read_varint`` with the one-byte case first: nearly every key and length in a link
    is under 128, and a 174-link file node was ~4,000 calls of the general loop."""
    if pos < len(block):
        byte = block[pos]
        if byte < 0x80:
            return byte, pos + 1
    return read_varint(block, pos)


@dataclass(frozen=True, slots=True)
class Link:
    """One PBLink: the CID in binary form (build a CID object only to fetch it)."""

    cid: bytes
    name: str | None
    tsize: int | None


@dataclass(frozen=True, slots=True)
class Split:
    """A dag-pb block's layout: links occupy ``block[:links_end]``; ``data`` is its Data."""

    data: bytes | memoryview | None  # a view when the block was given as one (no copy)
    links_end: int
    link_count: int


def split(block: bytes | memoryview, cid: object, start: int = 0, count: int = 0,
          max_links: int = -1) -> tuple[Split | None, int, int]:
    """Skip over links from ``start``; at most ``max_links`` of them (all when negative).

    Returns (the layout when the block was read to its end else None, position, links so far),
    so a caller can split a big block in slices and yield to the event loop between them.
    """
    pos = start
    end = len(block)
    try:
        while pos < end:
            if count == max_links:
                return None, pos, count
            key, after_key = _varint(block, pos)
            if key & 7 != 2:
                raise CodecError(f"unexpected PBNode field {key >> 3} (wire type {key & 7})")
            length, body = _varint(block, after_key)
            if body + length > end:
                raise CodecError(f"field {key >> 3} runs past the end of the message")
            if key == 0x12:  # Links (field 2)
                count += 1
                pos = body + length
            elif key == 0x0A:  # Data (field 1): canonical dag-pb puts it last, alone
                if body + length != end:
                    raise CodecError("Links after Data (not canonical dag-pb)")
                return Split(block[body:body + length], pos, count), end, count
            else:
                raise CodecError(f"unexpected PBNode field {key >> 3}")
        return Split(None, end, count), end, count
    except CodecError as exc:
        raise CodecError(f"malformed dag-pb block {cid}: {exc}") from None


def read_link(block: bytes, pos: int, cid: object) -> tuple[Link, int]:
    """The link whose field starts at ``pos`` (inside the links ``split`` found), and the
    position of the next one."""
    try:
        _, pos = _varint(block, pos)  # the key, checked by split
        length, pos = _varint(block, pos)
        end = pos + length
        link_cid: bytes | None = None
        name: str | None = None
        tsize: int | None = None
        while pos < end:
            key, pos = _varint(block, pos)
            if key == 0x18:  # Tsize (field 3, varint)
                tsize, pos = _varint(block, pos)
                continue
            if key not in (0x0A, 0x12):
                raise CodecError(f"unexpected PBLink field {key >> 3} (wire type {key & 7})")
            size, pos = _varint(block, pos)
            if pos + size > end:
                raise CodecError(f"PBLink field {key >> 3} runs past the end of the link")
            value = block[pos:pos + size]
            pos += size
            if key == 0x0A:  # Hash
                check_cid(value)
                link_cid = value
            else:  # Name
                try:
                    name = value.decode("utf-8")
                except UnicodeDecodeError:
                    raise CodecError("link name is not UTF-8") from None
        if link_cid is None:
            raise CodecError("link without a Hash")
        return Link(link_cid, name, tsize), end
    except CodecError as exc:
        raise CodecError(f"malformed dag-pb block {cid}: {exc}") from None


def check_cid(raw: bytes) -> int:
    """The codec of a binary CID whose structure is sound; CodecError otherwise."""
    if len(raw) == 34 and raw[0] == 0x12 and raw[1] == 0x20:
        return DAG_PB  # CIDv0: a bare sha2-256 multihash
    try:
        version, pos = _varint(raw, 0)
        codec, pos = _varint(raw, pos)
        _, pos = _varint(raw, pos)  # multihash function
        length, pos = _varint(raw, pos)
    except CodecError:
        raise CodecError("link hash is not a CID") from None
    if version != 1 or len(raw) - pos != length:
        raise CodecError("link hash is not a CID")
    return codec


