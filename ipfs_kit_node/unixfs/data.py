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
    data: bytes = b""
    filesize: int | None = None
    blocksizes: tuple[int, ...] = field(default_factory=tuple)
    hash_type: int | None = None
    fanout: int | None = None
    mode: int | None = None

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
        return bytes(out)

    @property
    def content_size(self) -> int:
        """Bytes of file content under this node."""
        if self.filesize is not None:
            return self.filesize
        return len(self.data) + sum(self.blocksizes)


def decode(data: bytes, cid: object = "?") -> UnixFSData:
    try:
        kind: int | None = None
        payload = b""
        filesize: int | None = None
        blocksizes: list[int] = []
        hash_type = fanout = mode = None
        for number, value in fields(data):
            if number == 1 and isinstance(value, int):
                kind = value
            elif number == 2 and isinstance(value, bytes):
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
            elif number == 8:
                pass  # mtime: not used when reading
            else:
                raise CodecError(f"unexpected field {number}")
        if kind is None or kind not in TYPE_NAMES:
            raise CodecError(f"missing or unknown UnixFS type {kind!r}")
        return UnixFSData(kind, payload, filesize, tuple(blocksizes), hash_type, fanout, mode)
    except CodecError as exc:
        raise CodecError(f"malformed UnixFS data in block {cid}: {exc}") from None
