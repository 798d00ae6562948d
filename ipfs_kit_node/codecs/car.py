"""CAR (content-addressed archives): a CARv1 writer and a CARv1/CARv2 reader, sans-IO.

The writer turns roots and blocks into bytes; the reader takes bytes as they arrive and hands
back the header and each block, its bytes checked against its CID (a block that does not hash
to its CID is an error naming it), so nothing unverified leaves this module. CARv2 is read by
skipping to its inner CARv1 payload; its index is ignored (we stream, we never seek).

    reader = CarReader()
    for event in reader.feed(chunk): ...   # CarHeader once, then CarBlock...
    reader.close()                          # CarError if the archive ended mid-block

Header: varint length + DAG-CBOR ``{"roots": [CID...], "version": 1}`` (libipld encodes and
decodes it). Each section: varint(len(cid) + len(data)) + binary CID + data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import libipld
from multiformats import CID, multihash

from ..cid import cid_from_bytes
from ..errors import CodecError
from .varint import VarintTooLong
from .varint import decode as varint_decode
from .varint import encode as varint

#: The header of any real CAR is a few hundred bytes (go-car allows 32 MiB; we need less).
MAX_HEADER_BYTES = 1 << 20
#: One section: the store's largest block (4 MiB) plus its CID.
MAX_SECTION_BYTES = 4 * 1024 * 1024 + 1024
#: CARv2 pragma + header: characteristics (16 B) and three little-endian u64 offsets/sizes.
CARV2_PRAGMA = bytes.fromhex("0aa16776657273696f6e02")
_V2_HEADER = 40
MAX_V2_PADDING = 16 << 20  # CARv2 data offset past its 51-byte header: a sane bound
_IDENTITY = 0x00
_SHA2_256 = 0x12


class CarError(CodecError):
    """A CAR archive is malformed, truncated, or holds a block that does not match its CID."""


@dataclass(frozen=True, slots=True)
class CarHeader:
    version: int  # 1, or 2 for a CARv2 (whose inner CARv1 roots are these)
    roots: tuple[CID, ...]


@dataclass(frozen=True, slots=True)
class CarBlock:
    cid: CID
    data: bytes


# -- writing -----------------------------------------------------------------------------------


def encode_header(roots: Iterable[CID | bytes]) -> bytes:
    """The CARv1 header (its varint length included)."""
    body = libipld.encode_dag_cbor({"roots": [_Link(bytes(r)) for r in roots], "version": 1})
    return varint(len(body)) + body


def encode_block(cid: CID | bytes, data: bytes) -> bytes:
    """One section: length, binary CID, block bytes."""
    raw = bytes(cid)
    return varint(len(raw) + len(data)) + raw + data


class _Link(bytes):
    """A binary CID handed to libipld, which encodes it as a tag-42 link (and would do the
    same to plain bytes that parse as a CID: hence only CIDs pass through here)."""


# -- reading -----------------------------------------------------------------------------------


def block_matches(cid: CID, data: bytes) -> bool:
    """Whether ``data`` hashes to ``cid`` (identity CIDs: whether it is the inlined bytes)."""
    digest = bytes(cid.digest)
    if digest[0] == _SHA2_256 and len(digest) == 34 and digest[1] == 32:
        return hashlib.sha256(data).digest() == digest[2:]
    if digest[0] == _IDENTITY:
        return bytes(cid.raw_digest) == data
    try:
        return bytes(multihash.digest(data, cid.hashfun)) == digest
    except Exception:  # a hash function we cannot compute cannot be verified: refuse it
        return False


class CarReader:
    """Feed bytes in, get ``CarHeader`` then ``CarBlock`` events out, each block verified."""

    def __init__(self, *, max_section: int = MAX_SECTION_BYTES) -> None:
        self._buf = bytearray()
        self._pos = 0  # in _buf
        self._offset = 0  # absolute offset of _buf[0] in the archive
        self._max_section = max_section
        self.header: CarHeader | None = None
        self.version = 0
        self.blocks = 0
        # CARv2: where the inner CARv1 starts and ends (absolute offsets).
        self._v2_start: int | None = None
        self._v2_end: int | None = None
        self._inner_header = False

    def feed(self, data: bytes) -> list[CarHeader | CarBlock]:
        if self._pos > 1 << 20 and self._pos * 2 > len(self._buf):
            del self._buf[:self._pos]
            self._offset += self._pos
            self._pos = 0
        self._buf += data
        out: list[CarHeader | CarBlock] = []
        while True:
            event = self._next()
            if event is None:
                return out
            out.append(event)

    def close(self) -> None:
        """Raise CarError unless the archive ended cleanly (after a whole section)."""
        if self.header is None:
            raise CarError("not a CAR archive: it ended before its header")
        if self._v2_end is not None:
            if self._offset + self._pos < self._v2_end:
                raise CarError("CARv2 archive ended before the end of its data payload")
        elif self._pos != len(self._buf):
            raise CarError(f"CAR archive ended in the middle of a section (block "
                           f"{self.blocks + 1}, {len(self._buf) - self._pos} bytes left over)")

    def _at(self) -> int:
        return self._offset + self._pos

    def _next(self) -> CarHeader | CarBlock | None:
        if self.header is None or (self._v2_start is not None and not self._inner_header):
            return self._read_header()
        if self._v2_end is not None and self._at() >= self._v2_end:
            self._pos = len(self._buf)  # the index (if any): not needed to stream
            return None
        section = self._read_frame(self._max_section, "section")
        if section is None:
            return None
        if self._v2_end is not None and self._at() > self._v2_end:
            raise CarError("CARv2 section runs past the end of its data payload")
        return self._block(section)

    def _read_frame(self, limit: int, what: str) -> bytes | None:
        try:
            decoded = varint_decode(self._buf, self._pos, 9)
        except VarintTooLong:
            raise CarError(f"malformed CAR: {what} length is not a varint") from None
        if decoded is None:
            return None
        length, start = decoded
        if length > limit:
            raise CarError(f"CAR {what} of {length} bytes at offset {self._at()} is over the "
                           f"{limit}-byte limit")
        if length == 0:
            raise CarError(f"malformed CAR: empty {what} at offset {self._at()}")
        if start + length > len(self._buf):
            return None
        body = bytes(self._buf[start:start + length])
        self._pos = start + length
        return body

    def _read_header(self) -> CarHeader | None:
        if self._v2_start is not None:  # a CARv2: skip to its CARv1 payload first
            skip = self._v2_start - self._at()
            if skip > 0:  # skipped as it arrives (feed drops what is behind): never buffered
                step = min(skip, len(self._buf) - self._pos)
                self._pos += step
                if step < skip:
                    return None
        body = self._read_frame(MAX_HEADER_BYTES, "header")
        if body is None:
            return None
        try:
            header = libipld.decode_dag_cbor(body)
        except Exception as exc:
            raise CarError(f"malformed CAR header: {exc}") from None
        if not isinstance(header, dict) or not isinstance(header.get("version"), int):
            raise CarError("malformed CAR header: no version")
        version = header["version"]
        if version == 2 and self.header is None and self._v2_start is None:
            return self._read_v2_header()
        if version != 1:
            raise CarError(f"unsupported CAR version {version} (CARv1 and CARv2 are read)")
        roots = header.get("roots")
        if not isinstance(roots, list) or not all(isinstance(r, bytes) for r in roots):
            raise CarError("malformed CAR header: roots is not a list of CIDs")
        try:
            cids = tuple(cid_from_bytes(r) for r in roots)
        except Exception as exc:
            raise CarError(f"malformed CAR header: a root is not a CID ({exc})") from None
        if self._v2_start is not None:
            self._inner_header = True
        else:
            self.version = 1
        self.header = CarHeader(self.version, cids)
        return self.header

    def _read_v2_header(self) -> CarHeader | None:
        if len(self._buf) - self._pos < _V2_HEADER:
            self._pos -= len(CARV2_PRAGMA)  # read the pragma again once the rest is here
            return None
        raw = self._buf[self._pos:self._pos + _V2_HEADER]
        data_offset = int.from_bytes(raw[16:24], "little")
        data_size = int.from_bytes(raw[24:32], "little")
        self._pos += _V2_HEADER
        if data_offset < len(CARV2_PRAGMA) + _V2_HEADER or data_size == 0:
            raise CarError(f"malformed CARv2 header: data offset {data_offset}, "
                           f"size {data_size}")
        if data_offset > len(CARV2_PRAGMA) + _V2_HEADER + MAX_V2_PADDING:
            raise CarError(f"CARv2 data offset {data_offset} is over {MAX_V2_PADDING} bytes "
                           "past its header: refused (writers pad a few bytes at most)")
        self.version = 2
        self._v2_start = data_offset
        self._v2_end = data_offset + data_size
        return self._read_header()

    def _block(self, section: bytes) -> CarBlock:
        cid_len = _cid_length(section)
        if cid_len is None:
            raise CarError(f"malformed CAR: section {self.blocks + 1} does not start with a CID")
        try:
            cid = cid_from_bytes(section[:cid_len])
        except Exception as exc:
            raise CarError(f"malformed CAR: section {self.blocks + 1}: {exc}") from None
        data = section[cid_len:]
        if not block_matches(cid, data):
            raise CarError(f"block {cid} in the CAR does not match its CID (corrupt or "
                           "forged): nothing after it was imported")
        self.blocks += 1
        return CarBlock(cid, data)


def _cid_length(section: bytes) -> int | None:
    """Bytes the binary CID at the start of a section takes."""
    if len(section) >= 34 and section[0] == 0x12 and section[1] == 0x20:
        return 34  # CIDv0
    pos = 0
    for _ in range(3):  # version, codec, hash function
        decoded = varint_decode(section, pos, 9)
        if decoded is None:
            return None
        pos = decoded[1]
    decoded = varint_decode(section, pos, 9)  # digest length
    if decoded is None or decoded[1] + decoded[0] > len(section):
        return None
    return decoded[1] + decoded[0]
