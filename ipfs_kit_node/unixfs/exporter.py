"""UnixFS export: stream a file's bytes, list a directory (basic or HAMT-sharded).

Reads blocks through anything with ``async get(cid) -> bytes`` that verifies them (the store
does; so will Bitswap), one block at a time in DAG order, so memory stays flat whatever the size.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from multiformats import CID

from ..cid import CidLike, to_cid
from ..codecs import dagpb
from ..errors import CodecError, IpfsKitError
from . import data as fs

DAG_PB, RAW = 0x70, 0x55


class BlockGetter(Protocol):
    async def get(self, cid: CidLike) -> bytes: ...


class NotAFileError(IpfsKitError, ValueError):
    """cat was asked for a directory (or a directory listing for a file)."""


@dataclass(frozen=True)
class Node:
    cid: CID
    links: tuple[dagpb.PBLink, ...]
    unixfs: fs.UnixFSData | None  # None for a raw block
    raw: bytes = b""

    @property
    def kind(self) -> str:
        return "file" if self.unixfs is None else fs.TYPE_NAMES[self.unixfs.type]

    @property
    def size(self) -> int:
        if self.unixfs is None:
            return len(self.raw)
        return self.unixfs.content_size if self.unixfs.type in (fs.FILE, fs.RAW) else 0


async def resolve(blocks: BlockGetter, cid: CidLike) -> Node:
    """Fetch and decode one UnixFS node; a malformed one raises CodecError naming the CID."""
    cid = to_cid(cid)
    data = await blocks.get(cid)
    if cid.codec.code == RAW:
        return Node(cid, (), None, data)
    if cid.codec.code != DAG_PB:
        raise CodecError(f"{cid} uses codec {cid.codec.name}, not UnixFS (dag-pb or raw)")
    node = dagpb.decode(data, str(cid))
    if node.data is None:
        raise CodecError(f"malformed UnixFS node {cid}: dag-pb node without Data")
    return Node(cid, node.links, fs.decode(node.data, str(cid)))


async def cat(blocks: BlockGetter, cid: CidLike) -> AsyncIterator[bytes]:
    """A file's bytes, in order, block by block."""
    root = await resolve(blocks, cid)
    if root.kind in ("directory", "hamt-sharded-directory"):
        raise NotAFileError(f"{root.cid} is a directory; use `get` or `ls`")
    if root.kind not in ("file", "raw"):
        raise NotAFileError(f"{root.cid} is a UnixFS {root.kind}, not a file")
    async for chunk in _file_bytes(blocks, root):
        yield chunk


async def _file_bytes(blocks: BlockGetter, node: Node) -> AsyncIterator[bytes]:
    if node.unixfs is None:
        if node.raw:
            yield node.raw
        return
    if node.unixfs.type not in (fs.FILE, fs.RAW):
        raise CodecError(f"{node.cid}: a {node.kind} node inside a file")
    if node.unixfs.data:
        yield node.unixfs.data
    prefetch = getattr(blocks, "prefetch", None)
    if prefetch is not None and node.links:
        prefetch(link.cid for link in node.links)  # fetched from peers while we read
    for link in node.links:
        child = await resolve(blocks, link.cid)
        async for chunk in _file_bytes(blocks, child):
            yield chunk


@dataclass(frozen=True)
class DirEntry:
    name: str
    cid: CID
    tsize: int


async def ls(blocks: BlockGetter, cid: CidLike) -> AsyncIterator[DirEntry]:
    """A directory's entries in link order (HAMT shards walked, their name prefixes removed)."""
    node = await resolve(blocks, cid)
    if node.kind == "directory":
        for link in node.links:
            yield DirEntry(link.name or "", to_cid(link.cid), link.tsize or 0)
    elif node.kind == "hamt-sharded-directory":
        async for entry in _shard_entries(blocks, node):
            yield entry
    else:
        raise NotAFileError(f"{node.cid} is a {node.kind}, not a directory")


async def _shard_entries(blocks: BlockGetter, node: Node) -> AsyncIterator[DirEntry]:
    assert node.unixfs is not None
    fanout = node.unixfs.fanout or 256
    prefix = len(f"{fanout - 1:X}")
    for link in node.links:
        name = link.name or ""
        if len(name) < prefix:
            raise CodecError(f"{node.cid}: HAMT link name {name!r} is shorter than its prefix")
        if len(name) == prefix:  # a sub-shard
            child = await resolve(blocks, link.cid)
            if child.kind != "hamt-sharded-directory":
                raise CodecError(f"{child.cid}: expected a HAMT shard, found a {child.kind}")
            async for entry in _shard_entries(blocks, child):
                yield entry
        else:
            yield DirEntry(name[prefix:], to_cid(link.cid), link.tsize or 0)


async def fetch_dag(blocks: BlockGetter, cid: CidLike) -> int:
    """Read every block of a DAG through ``blocks`` (through Bitswap, that stores them all,
    ready to pin); returns how many. Children are prefetched level by level."""
    prefetch = getattr(blocks, "prefetch", None)
    seen: set[bytes] = set()
    stack = [to_cid(cid)]
    while stack:
        current = stack.pop()
        key = bytes(current)
        if key in seen:
            continue
        seen.add(key)
        data = await blocks.get(current)
        if current.codec.code == DAG_PB:
            links = [to_cid(link.cid) for link in dagpb.decode(data, str(current)).links]
            if prefetch is not None and links:
                prefetch(links)
            stack.extend(reversed(links))
    return len(seen)
