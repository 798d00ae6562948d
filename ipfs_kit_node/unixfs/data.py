"""The UnixFS Data message (inside a dag-pb node's Data field), encoded exactly as Kubo and
Helia do: proto2 field order, ``blocksizes`` not packed, ``filesize`` only on file/raw nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..codecs.protobuf import bytes_field, fields, int_field, read_varint
from ..errors import CodecError

RAW, DIRECTORY, FILE, METADATA, SYMLINK, HAMT_SHARD = range(6)
TYPE_NAMES = {RAW: "raw", DIRECTORY: "directory", FILE: "file", METADATA: "metadata",
              SYMLINK: "symlink", HAMT_SHARD: "hamt-sharded-directory"}


@dataclass(frozen=True)
class UnixFSData:
    type: int
    data: bytes | memoryview = b""  # a view of the block when decoded with ``view=True``
    filesize: int | None = None
    blocksizes: tuple[int, ...] = field(default_factory=tuple)
    hash_type: int | None = None
    fanout: int | None = None
    mode: int | None = None
    mtime: tuple[int, int] | None = None  # (seconds, nanoseconds): UnixFS 1.5

    def encode(self) -> bytes:
        out = bytearray(int_field(1, self.type))
        if self.data:
            out += bytes_field(2, self.data)
        if self.filesize is not None:
            out += int_field(3, self.filesize)
        for size in self.blocksizes:
            out += int_field(4, size)
        for number, value in ((5, self.hash_type), (6, self.fanout), (7, self.mode)):
            if value is not None:
                out += int_field(number, value)
        if self.mtime is not None:
            out += bytes_field(8, encode_mtime(*self.mtime))
        return bytes(out)

    @property
    def content_size(self) -> int:
        """Bytes of file content under this node."""
        if self.filesize is not None:
            return self.filesize
        return len(self.data) + sum(self.blocksizes)


def encode_mtime(seconds: int, nanos: int = 0) -> bytes:
    """UnixTime {int64 Seconds = 1; fixed32 FractionalNanoseconds = 2}, nanos only when set."""
    out = int_field(1, seconds)
    if nanos:
        out += b"\x15" + nanos.to_bytes(4, "little")
    return out


def decode_mtime(data: bytes | memoryview) -> tuple[int, int]:
    """The inverse of encode_mtime (fixed32 is the one non-varint field UnixFS has)."""
    seconds, nanos, pos = 0, 0, 0
    while pos < len(data):
        key, pos = read_varint(data, pos)
        if key == 0x08:
            seconds, pos = read_varint(data, pos)
            if seconds >= 1 << 63:
                seconds -= 1 << 64
        elif key == 0x15 and pos + 4 <= len(data):
            nanos = int.from_bytes(data[pos:pos + 4], "little")
            pos += 4
        else:
            raise CodecError(f"malformed mtime (field key {key})")
    if nanos >= 10**9:
        raise CodecError(f"mtime nanoseconds {nanos} out of range")
    return seconds, nanos


def decode(data: bytes | memoryview, cid: object = "?", *, view: bool = False) -> UnixFSData:
    """With ``view`` (and a memoryview in), the Data payload is a view of the block: a 64 MiB
    ``cat`` then copies no payload bytes in the daemon."""
    try:
        kind: int | None = None
        payload: bytes | memoryview = b""
        filesize: int | None = None
        blocksizes: list[int] = []
        hash_type = fanout = mode = None
        mtime: tuple[int, int] | None = None
        for number, value in fields(data, views=view):
            if number == 1 and isinstance(value, int):
                kind = value
            elif number == 2 and isinstance(value, (bytes, memoryview)):
                payload = value
            elif number == 3 and isinstance(value, int):
                filesize = value
            elif number == 4:
                if isinstance(value, int):
                    blocksizes.append(value)
                else:  # tolerate the packed form
                    pos = 0
                    while pos < len(value):
                        size, pos = read_varint(value, pos)
                        blocksizes.append(size)
            elif number == 5 and isinstance(value, int):
                hash_type = value
            elif number == 6 and isinstance(value, int):
                fanout = value
            elif number == 7 and isinstance(value, int):
                mode = value
            elif number == 8 and isinstance(value, (bytes, memoryview)):
                mtime = decode_mtime(value)
            else:
                raise CodecError(f"unexpected field {number}")
        if kind is None or kind not in TYPE_NAMES:
            raise CodecError(f"missing or unknown UnixFS type {kind!r}")
        return UnixFSData(kind, payload, filesize, tuple(blocksizes), hash_type, fanout, mode,
                          mtime)
    except CodecError as exc:
        raise CodecError(f"malformed UnixFS data in block {cid}: {exc}") from None
