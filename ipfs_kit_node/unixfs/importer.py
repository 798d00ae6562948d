"""UnixFS import: fixed-size chunks, balanced layout, CIDs identical to Kubo's and Helia's.

Pure and synchronous: bytes in, blocks out, nothing held but one pending link list per tree
level, so a file of any size streams through in bounded memory. The rules that decide CIDs
(matching ipfs-unixfs-importer and go-unixfs):

- each chunk is a leaf: a raw block (raw leaves) or a dag-pb node holding UnixFS
  ``{Type: File, Data: chunk, filesize}``;
- a file of one chunk is that leaf itself;
- leaves are grouped ``max_links`` at a time, left to right, into parent nodes
  ``{Type: File, filesize, blocksizes}`` whose links have Name "" and Tsize = the child's whole
  encoded subtree; groups are reduced level by level until one root remains, and a lone last
  group is still wrapped in a parent, never promoted;
- directories are ``{Type: Directory}`` nodes with links sorted by name bytes.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from multiformats import CID, multihash

from ..cid import to_cid
from ..codecs.dagpb import PBLink
from ..codecs.dagpb import encode as encode_pb
from ..codecs.varint import encode as varint
from .data import DIRECTORY, FILE, UnixFSData


@dataclass(frozen=True)
class ImportParams:
    cid_version: int = 0
    raw_leaves: bool = False
    chunk_size: int = 256 * 1024
    max_links: int = 174
    hash: str = "sha2-256"

    def __post_init__(self) -> None:
        if self.cid_version not in (0, 1):
            raise ValueError("cid_version must be 0 or 1")
        if self.cid_version == 0 and self.raw_leaves:
            raise ValueError("raw leaves need CIDv1 (CIDv0 can only name dag-pb blocks)")
        if not 1 <= self.chunk_size <= 2 * 1024 * 1024 - 256:
            raise ValueError("chunk size must be between 1 byte and 2 MiB - 256 B")
        if self.max_links < 2:
            raise ValueError("max links must be at least 2")


PROFILES = {
    # Kubo's `ipfs add` default.
    "unixfs-v0-2015": ImportParams(cid_version=0, raw_leaves=False, chunk_size=256 * 1024,
                                   max_links=174),
    # IPIP-0499; Helia's default.
    "unixfs-v1-2025": ImportParams(cid_version=1, raw_leaves=True, chunk_size=1024 * 1024,
                                   max_links=1024),
}
KUBO_DEFAULT = PROFILES["unixfs-v0-2015"]


@dataclass(frozen=True)
class Block:
    """A block as made: its CID in binary form (a CID object only on demand: building one
    per block costs more than hashing it) and its bytes."""

    cid_bytes: bytes
    data: bytes

    @property
    def cid(self) -> CID:
        return to_cid(self.cid_bytes)


@dataclass(frozen=True)
class Entry:
    """A finished file or directory: its root, DAG size (Tsize) and content size."""

    cid_bytes: bytes
    tsize: int
    filesize: int

    @property
    def cid(self) -> CID:
        return to_cid(self.cid_bytes)


DAG_PB, RAW = 0x70, 0x55


def _cid_bytes(data: bytes, codec: int, params: ImportParams) -> bytes:
    if params.hash == "sha2-256":
        mh = b"\x12\x20" + hashlib.sha256(data).digest()
    else:
        mh = bytes(multihash.digest(data, params.hash))
    if params.cid_version == 0 and codec == DAG_PB:
        return mh
    return b"\x01" + varint(codec) + mh


def _file_leaf(chunk: bytes) -> bytes:
    """dag-pb {Data: UnixFS {Type: File, Data: chunk, filesize}} with one copy of the chunk
    (the general encoders would copy it three times)."""
    n = varint(len(chunk))
    if chunk:
        unixfs_len = 3 + len(n) + len(chunk) + 1 + len(n)
        return b"".join((b"\x0a", varint(unixfs_len), b"\x08\x02\x12", n, chunk, b"\x18", n))
    return b"\x0a\x04\x08\x02\x18\x00"


def _node(links: list[PBLink], unixfs: UnixFSData, params: ImportParams) -> Block:
    data = encode_pb(links, unixfs.encode())
    return Block(_cid_bytes(data, DAG_PB, params), data)


class FileBuilder:
    """Feed chunks, collect the blocks it gives back, then ``finish()`` for the root."""

    def __init__(self, params: ImportParams = KUBO_DEFAULT) -> None:
        self.params = params
        self._levels: list[list[Entry]] = [[]]
        self._reduced: list[int] = [0]  # how many nodes of each level went into a parent
        self._chunks = 0

    def add_chunk(self, chunk: bytes) -> list[Block]:
        self._chunks += 1
        if self.params.raw_leaves:
            block = Block(_cid_bytes(chunk, RAW, self.params), chunk)
            leaf = Entry(block.cid_bytes, len(chunk), len(chunk))
        else:
            data = _file_leaf(chunk)
            block = Block(_cid_bytes(data, DAG_PB, self.params), data)
            leaf = Entry(block.cid_bytes, len(data), len(chunk))
        out = [block]
        self._push(0, leaf, out)
        return out

    def _push(self, level: int, entry: Entry, out: list[Block]) -> None:
        self._levels[level].append(entry)
        if len(self._levels[level]) == self.params.max_links:
            self._reduce(level, out)

    def _reduce(self, level: int, out: list[Block]) -> None:
        children = self._levels[level]
        self._levels[level] = []
        self._reduced[level] += len(children)
        # Empty leaves carry nothing and are not linked (as ipfs-unixfs-importer does).
        children = [c for c in children if c.filesize > 0]
        block = _node(
            [PBLink(c.cid_bytes, "", c.tsize) for c in children],
            UnixFSData(FILE, filesize=sum(c.filesize for c in children),
                       blocksizes=tuple(c.filesize for c in children)),
            self.params,
        )
        out.append(block)
        if level + 1 == len(self._levels):
            self._levels.append([])
            self._reduced.append(0)
        parent = Entry(block.cid_bytes, len(block.data) + sum(c.tsize for c in children),
                       sum(c.filesize for c in children))
        self._push(level + 1, parent, out)

    def finish(self) -> tuple[list[Block], Entry]:
        out: list[Block] = []
        if self._chunks == 0:  # an empty file is one empty leaf
            out += self.add_chunk(b"")
        level = 0
        while True:
            pending = self._levels[level]
            higher = level + 1 < len(self._levels) and any(self._levels[level + 1:])
            if len(pending) == 1 and self._reduced[level] == 0 and not higher:
                return out, pending[0]
            if pending:
                self._reduce(level, out)
            level += 1


def chunks(stream: BinaryIO, size: int) -> Iterator[bytes]:
    """Exactly ``size`` bytes at a time (the last chunk may be shorter)."""
    while True:
        buf = stream.read(size)
        if not buf:
            return
        while len(buf) < size:
            more = stream.read(size - len(buf))
            if not more:
                break
            buf += more
        yield buf
        if len(buf) < size:
            return


def import_stream(stream: BinaryIO, params: ImportParams = KUBO_DEFAULT
                  ) -> Iterator[Block | Entry]:
    """Blocks of one file as they are made, then its Entry last."""
    builder = FileBuilder(params)
    for chunk in chunks(stream, params.chunk_size):
        yield from builder.add_chunk(chunk)
    blocks, entry = builder.finish()
    yield from blocks
    yield entry


def import_bytes(data: bytes, params: ImportParams = KUBO_DEFAULT) -> tuple[list[Block], Entry]:
    items = list(import_stream(io.BytesIO(data), params))
    entry = items.pop()
    assert isinstance(entry, Entry)
    return [b for b in items if isinstance(b, Block)], entry


@dataclass
class DirectoryBuilder:
    params: ImportParams = KUBO_DEFAULT
    entries: dict[str, Entry] = field(default_factory=dict)

    def add(self, name: str, entry: Entry) -> None:
        if not name or "/" in name:
            raise ValueError(f"invalid directory entry name {name!r}")
        self.entries[name] = entry

    def finish(self) -> tuple[Block, Entry]:
        names = sorted(self.entries, key=lambda n: n.encode("utf-8"))
        links = [PBLink(self.entries[n].cid_bytes, n, self.entries[n].tsize) for n in names]
        block = _node(links, UnixFSData(DIRECTORY), self.params)
        tsize = len(block.data) + sum(link.tsize or 0 for link in links)
        return block, Entry(block.cid_bytes, tsize,
                            sum(e.filesize for e in self.entries.values()))


@dataclass(frozen=True)
class Added:
    """One ``added CID NAME`` line: a file or directory finished importing."""

    name: str
    entry: Entry
    is_dir: bool


def import_path(path: Path, params: ImportParams = KUBO_DEFAULT, name: str | None = None,
                ) -> Iterator[Block | Added]:
    """A file or a directory tree: blocks as made, an Added for each file and folder.

    Order as ``ipfs add -r``: a folder's entries in name order, the folder after them.
    Symlinks are skipped (not followed).
    """
    name = name if name is not None else path.name
    if path.is_dir():
        builder = DirectoryBuilder(params)
        for child in sorted(os.scandir(path), key=lambda e: e.name.encode("utf-8")):
            if child.is_symlink():
                continue
            last: Added | None = None
            for item in import_path(Path(child.path), params, f"{name}/{child.name}"):
                if isinstance(item, Added):
                    last = item
                yield item
            assert last is not None
            builder.add(child.name, last.entry)
        block, entry = builder.finish()
        yield block
        yield Added(name, entry, True)
        return
    with open(path, "rb") as f:
        for made in import_stream(f, params):
            yield Added(name, made, False) if isinstance(made, Entry) else made
