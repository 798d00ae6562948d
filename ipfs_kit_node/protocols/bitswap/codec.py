"""Bitswap messages on the wire (1.0.0, 1.1.0, 1.2.0): plain objects, bytes in and out.

Each message is prefixed by its length as an unsigned varint and is at most 4 MiB. Payload
blocks carry a CID prefix (version, codec, multihash type and length) from which the receiver
rebuilds the CID by hashing the data, so a block can only ever arrive under its own CID.

A 4 MiB message can hold 100,000 wants, and a CID object costs ~100-150 µs to build through
``multiformats``' validating constructors: decoding them all held the event loop for 35 s. So
the caps apply while walking the bytes: at most ``MAX_WANT_ENTRIES`` wants,
``MAX_PAYLOAD_BLOCKS`` blocks and ``MAX_PRESENCES`` presences are decoded per message, however
many times the wantlist field repeats (the rest are skipped over without copying, and counted
in ``Message.ignored``); of repeated varint fields only the last value is kept; and CIDs are
built from their bytes by ``cid.cid_from_bytes`` (~3 µs).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import IntEnum

from multiformats import CID, multihash

from ...cid import cid_from_bytes
from ...codecs.framing import LengthPrefixedDecoder
from ...codecs.protobuf import bytes_field, fields, int_field, read_varint
from ...codecs.varint import encode as varint
from ...errors import CodecError, PeerBrokenError

MAX_MESSAGE_BYTES = 4 * 1024 * 1024
MAX_BLOCK_BYTES = 2 * 1024 * 1024
MAX_CID_BYTES = 168  # longer CIDs are ignored (as Kubo does)
CIDV0_PREFIX = b"\x00\x70\x12\x20"
# Decoded per message; the rest is skipped and counted as ignored. A peer's wantlist is capped
# at 1,024 entries anyway (the ledger, as boxo), and we never have more than a few hundred
# wants out, so no honest peer sends more blocks or presences than that in one message.
MAX_WANT_ENTRIES = 1024
MAX_PAYLOAD_BLOCKS = 1024
MAX_PRESENCES = 1024


class ProtocolViolation(PeerBrokenError):
    """The peer sent bytes that are not a valid Bitswap message."""


class WantType(IntEnum):
    BLOCK = 0
    HAVE = 1


class Presence(IntEnum):
    HAVE = 0
    DONT_HAVE = 1


@dataclass(frozen=True)
class WantEntry:
    cid: CID
    priority: int = 1
    cancel: bool = False
    want_type: WantType = WantType.BLOCK
    send_dont_have: bool = False


@dataclass(frozen=True)
class Message:
    wants: tuple[WantEntry, ...] = ()
    full: bool = False
    blocks: tuple[tuple[CID, bytes], ...] = ()
    presences: tuple[tuple[CID, Presence], ...] = ()
    pending_bytes: int = 0
    # CIDs in the wantlist that could not be parsed or were too long (ignored, as Kubo does)
    ignored: int = field(default=0, compare=False)

    @property
    def empty(self) -> bool:
        return not (self.wants or self.blocks or self.presences or self.full)


def cid_prefix(cid: CID) -> bytes:
    if cid.version == 0:
        return CIDV0_PREFIX
    return (varint(1) + varint(cid.codec.code) + varint(cid.hashfun.code)
            + varint(len(cid.raw_digest)))


def encode(message: Message, protocol: str = "/ipfs/bitswap/1.2.0") -> bytes:
    """One length-prefixed message, in the dialect of ``protocol``.

    Built as a list of parts joined once: a 256 KiB block is copied once into the message
    (nested ``bytes_field`` concatenations copied it four times, a fifth of a seeder's
    busy time serving Kubo or ourselves)."""
    parts: list[bytes] = []
    if message.wants or message.full:
        wl = bytearray()
        for w in message.wants:
            entry = bytes_field(1, bytes(w.cid)) + int_field(2, w.priority)
            if w.cancel:
                entry += int_field(3, 1)
            if w.want_type is WantType.HAVE:
                entry += int_field(4, 1)
            if w.send_dont_have:
                entry += int_field(5, 1)
            wl += bytes_field(1, entry)
        if message.full:
            wl += int_field(2, 1)
        parts.append(bytes_field(1, bytes(wl)))
    legacy = protocol.endswith("1.0.0") or protocol == "/ipfs/bitswap"
    for cid, data in message.blocks:
        size = len(data)
        if legacy:
            parts += (_TAG_BLOCK, varint(size), data)
            continue
        prefix = bytes_field(1, cid_prefix(cid))
        data_head = _TAG_DATA + varint(size)
        parts += (_TAG_PAYLOAD, varint(len(prefix) + len(data_head) + size), prefix,
                  data_head, data)
    for cid, presence in message.presences:
        parts.append(bytes_field(4, bytes_field(1, bytes(cid)) + int_field(2, int(presence))))
    if message.pending_bytes:
        parts.append(int_field(5, message.pending_bytes))
    total = sum(map(len, parts))
    if total > MAX_MESSAGE_BYTES:
        raise ValueError(f"message of {total} bytes is over the {MAX_MESSAGE_BYTES} limit")
    parts.insert(0, varint(total))
    return b"".join(parts)


_TAG_BLOCK = varint(2 << 3 | 2)  # Message.blocks (1.0.0)
_TAG_PAYLOAD = varint(3 << 3 | 2)  # Message.payload (1.1.0+)
_TAG_DATA = varint(2 << 3 | 2)  # Block.data


def _signed32(value: int) -> int:
    value &= 0xFFFFFFFFFFFFFFFF
    return value - (1 << 64) if value >= 1 << 63 else value


def _cid_from_prefix(prefix: bytes, data: bytes) -> CID:
    if prefix == CIDV0_PREFIX:
        return cid_from_bytes(b"\x12\x20" + hashlib.sha256(data).digest())
    pos = 0
    values = []
    for _ in range(4):
        value, pos = read_varint(prefix, pos)
        values.append(value)
    version, codec, hash_code, length = values
    if version != 1:
        raise ProtocolViolation(f"payload prefix has CID version {version}")
    if hash_code == 0x12 and length == 32:
        digest = b"\x12\x20" + hashlib.sha256(data).digest()
    else:
        fn = multihash.get(code=hash_code)
        digest = bytes(fn.digest(data, size=length))
    return cid_from_bytes(varint(1) + varint(codec) + digest)


def _spans(buf: bytes, start: int, end: int, keep: int, varints: tuple[int, ...] = ()
           ) -> tuple[list[tuple[int, int, int]], dict[int, int], int]:
    """The fields of ``buf[start:end]`` without copying: (number, start, end) of the first
    ``keep`` length-delimited ones, and the last value of each varint field numbered in
    ``varints`` (protobuf: the last one wins). The other fields are only counted (the third
    value returned), in a tight loop: walking 100,000 entries costs ~15 ms, and a message of
    2 million repeated varints builds nothing. Other wire types raise ProtocolViolation."""
    out: list[tuple[int, int, int]] = []
    last: dict[int, int] = {}
    skipped = 0
    pos = start
    while pos < end:
        key = buf[pos]
        if key < 0x80:
            pos += 1
        else:
            key, pos = read_varint(buf, pos)
        wire = key & 7
        if wire == 2:
            length = buf[pos] if pos < end else 0x80
            if length < 0x80:
                pos += 1
            else:
                length, pos = read_varint(buf, pos)
            if len(out) < keep:
                out.append((key >> 3, pos, pos + length))
            else:
                skipped += 1
            pos += length
        elif wire == 0:
            if pos < end and buf[pos] < 0x80:
                value = buf[pos]
                pos += 1
            else:
                value, pos = read_varint(buf, pos)
            if key >> 3 in varints:
                last[key >> 3] = value
        else:
            raise ProtocolViolation(f"field {key >> 3} has wire type {wire}")
    if pos != end:
        raise ProtocolViolation("a field runs past the end of the message")
    return out, last, skipped


def decode(body: bytes, *, max_wants: int = MAX_WANT_ENTRIES,
           max_blocks: int = MAX_PAYLOAD_BLOCKS, max_presences: int = MAX_PRESENCES
           ) -> Message:
    """A message body (without its length prefix). Raises ProtocolViolation.

    Entries past the caps are skipped without being decoded (counted in ``ignored``); a block
    past its cap is neither hashed nor checked.
    """
    try:
        wants: list[WantEntry] = []
        full = False
        blocks: list[tuple[CID, bytes]] = []
        presences: list[tuple[CID, Presence]] = []
        top, top_varints, ignored = _spans(body, 0, len(body), 2 + max_blocks + max_presences,
                                           (5,))
        pending = max(0, _signed32(top_varints.get(5, 0)))
        walked = 0  # want entries looked at, across every wantlist field of the message
        for number, start, end in top:
            if number == 1:
                entries, flags, skipped = _spans(body, start, end, max_wants - walked, (2,))
                ignored += skipped
                walked += len(entries)
                if 2 in flags:
                    full = bool(flags[2])
                for n, s, e in entries:
                    if n != 1:
                        continue
                    entry = _decode_entry(body[s:e])
                    if entry is None:
                        ignored += 1
                    else:
                        wants.append(entry)
            elif number in (2, 3) and len(blocks) >= max_blocks:
                ignored += 1
            elif number == 2:
                value = body[start:end]
                _check_block(value)
                blocks.append((cid_from_bytes(b"\x12\x20" + hashlib.sha256(value).digest()),
                               value))
            elif number == 3:
                prefix = data = None  # sliced out of the body once (no copy of the entry)
                inner, _, _ = _spans(body, start, end, 8)
                for n, s, e in inner:
                    if n == 1:
                        prefix = body[s:e]
                    elif n == 2:
                        data = body[s:e]
                if prefix is None or data is None:
                    raise ProtocolViolation("payload block without prefix or data")
                _check_block(data)
                blocks.append((_cid_from_prefix(prefix, data), data))
            elif number == 4:
                presence = _decode_presence(body[start:end]) \
                    if len(presences) < max_presences else None
                if presence is None:
                    ignored += 1
                else:
                    presences.append(presence)
        return Message(tuple(wants), full, tuple(blocks), tuple(presences), pending, ignored)
    except ProtocolViolation:
        raise
    except Exception as exc:  # any decoding failure is the peer's
        raise ProtocolViolation(f"malformed Bitswap message: {exc}") from None


def rest_beside_one_block(body: bytes | memoryview, look: int = 4) -> int:
    """How many bytes of a message body are not its largest block, if that block (a
    ``blocks`` or ``payload`` field) is among its first ``look`` top-level fields; else the
    whole length. A message of one block and little else (Kubo's and ours: an empty wantlist,
    the block, pendingBytes) costs one hash to decode whatever its size; the rest is what
    bounds the walk over entries. Looks at ``look`` fields at most; never raises."""
    size = len(body)
    pos = 0
    biggest = 0
    try:
        for _ in range(look):
            if pos >= size:
                break
            key, pos = read_varint(body, pos)
            wire = key & 7
            if wire == 0:
                _, pos = read_varint(body, pos)
            elif wire == 2:
                length, pos = read_varint(body, pos)
                pos += length
                if pos > size:
                    return size
                if key >> 3 in (2, 3):
                    biggest = max(biggest, length)
            else:
                return size
    except CodecError:
        return size
    return size - biggest


def _check_block(data: bytes) -> None:
    if len(data) > MAX_BLOCK_BYTES:
        raise ProtocolViolation(f"block of {len(data)} bytes (limit {MAX_BLOCK_BYTES})")


def _decode_presence(buf: bytes) -> tuple[CID, Presence] | None:
    cid, kind = None, 0  # proto3: Have (0) is the default and left off the wire
    for n, v in fields(buf):
        if n == 1 and isinstance(v, bytes):
            cid = v
        elif n == 2 and isinstance(v, int):
            kind = v
    if cid is None or kind not in (0, 1) or len(cid) > MAX_CID_BYTES:
        return None
    try:
        return cid_from_bytes(cid), Presence(kind)
    except Exception:
        return None


def _decode_entry(buf: bytes) -> WantEntry | None:
    cid_bytes = None
    priority, cancel, want_type, send_dont_have = 1, False, WantType.BLOCK, False
    for n, v in fields(buf):
        if n == 1 and isinstance(v, bytes):
            cid_bytes = v
        elif n == 2 and isinstance(v, int):
            priority = _signed32(v)
        elif n == 3 and isinstance(v, int):
            cancel = bool(v)
        elif n == 4 and isinstance(v, int):
            want_type = WantType.HAVE if v == 1 else WantType.BLOCK
        elif n == 5 and isinstance(v, int):
            send_dont_have = bool(v)
    if cid_bytes is None or len(cid_bytes) > MAX_CID_BYTES:
        return None
    try:
        cid = cid_from_bytes(cid_bytes)
    except Exception:
        return None
    return WantEntry(cid, priority, cancel, want_type, send_dont_have)


class FrameDecoder(LengthPrefixedDecoder):
    """Length-prefixed frames in, message bodies out; refuses oversized or runaway lengths."""

    def __init__(self, max_bytes: int = MAX_MESSAGE_BYTES) -> None:
        super().__init__(max_bytes, ProtocolViolation)
