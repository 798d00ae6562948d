"""DAG-CBOR read for walking: values with links kept as links, so a DAG can be followed.

libipld decodes DAG-CBOR fast but hands links back as plain bytes (a byte string and a CID
look the same), which is fine for a CAR header but not for following a DAG whose blocks hold
both. This small decoder keeps tag 42 as ``Link``; it is used on one block at a time, bounded
in nesting depth and item count, and errors name the block.
"""

from __future__ import annotations

import struct
from typing import Any

from ..errors import CodecError

DAG_CBOR = 0x71
DAG_JSON = 0x0129
#: Nesting deeper than this is refused (the decoder recurses; Python's limit is ~1,000).
MAX_NESTING = 256


class Link(bytes):
    """A binary CID found under CBOR tag 42 (its 0x00 multibase prefix removed)."""


def decode(block: bytes, cid: object = "block") -> Any:
    """The block's value; maps as dicts, lists as lists, links as ``Link``."""
    try:
        value, pos = _item(memoryview(block), 0, 0)
    except CodecError as exc:
        raise CodecError(f"malformed DAG-CBOR block {cid}: {exc}") from None
    except (IndexError, struct.error):
        raise CodecError(f"malformed DAG-CBOR block {cid}: truncated") from None
    if pos != len(block):
        raise CodecError(f"malformed DAG-CBOR block {cid}: {len(block) - pos} bytes after "
                         "its value")
    return value


def links(value: Any) -> list[Link]:
    """Every link in a decoded value, in the order it was encoded (depth-first)."""
    out: list[Link] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, Link):
            out.append(item)
        elif isinstance(item, dict):
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            stack.extend(reversed(item))
    return out


def _length(buf: memoryview, pos: int, info: int) -> tuple[int, int]:
    if info < 24:
        return info, pos
    if info == 24:
        return buf[pos], pos + 1
    if info == 25:
        return int.from_bytes(buf[pos:pos + 2], "big"), pos + 2
    if info == 26:
        return int.from_bytes(buf[pos:pos + 4], "big"), pos + 4
    if info == 27:
        return int.from_bytes(buf[pos:pos + 8], "big"), pos + 8
    raise CodecError(f"indefinite or reserved length (additional info {info})")


def _item(buf: memoryview, pos: int, depth: int) -> tuple[Any, int]:
    if depth > MAX_NESTING:
        raise CodecError(f"nested over {MAX_NESTING} levels deep")
    head = buf[pos]
    major, info = head >> 5, head & 31
    pos += 1
    if major == 7:
        if info == 20:
            return False, pos
        if info == 21:
            return True, pos
        if info == 22:
            return None, pos
        if info == 27:
            return struct.unpack(">d", buf[pos:pos + 8])[0], pos + 8
        raise CodecError(f"unsupported simple value or float (additional info {info})")
    n, pos = _length(buf, pos, info)
    if major == 0:
        return n, pos
    if major == 1:
        return -1 - n, pos
    if major in (2, 3):
        end = pos + n
        if end > len(buf):
            raise CodecError("string runs past the end of the block")
        raw = bytes(buf[pos:end])
        if major == 2:
            return raw, end
        try:
            return raw.decode("utf-8"), end
        except UnicodeDecodeError:
            raise CodecError("text string is not UTF-8") from None
    if major == 4:
        if n > len(buf) - pos:
            raise CodecError("list longer than the block")
        items = []
        for _ in range(n):
            item, pos = _item(buf, pos, depth + 1)
            items.append(item)
        return items, pos
    if major == 5:
        if n > len(buf) - pos:
            raise CodecError("map longer than the block")
        out: dict[str, Any] = {}
        for _ in range(n):
            key, pos = _item(buf, pos, depth + 1)
            if not isinstance(key, str):
                raise CodecError("map key is not a string")
            out[key], pos = _item(buf, pos, depth + 1)
        return out, pos
    if major == 6:
        if n != 42:
            raise CodecError(f"unsupported tag {n} (DAG-CBOR allows only 42)")
        value, pos = _item(buf, pos, depth + 1)
        if not isinstance(value, bytes) or not value or value[0] != 0:
            raise CodecError("tag 42 is not a CID")
        return Link(value[1:]), pos
    raise CodecError(f"unknown major type {major}")
