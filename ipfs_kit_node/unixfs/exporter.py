"""UnixFS export: stream a file's bytes, list a directory (basic or HAMT-sharded).

Reads blocks through anything with ``async get(cid) -> bytes`` that verifies them (the store
does; so will Bitswap), one block at a time in DAG order, so memory stays flat whatever the size.

The DAG may come from anyone, so every walk is bounded (see MAX_DEPTH, MAX_HAMT_DEPTH,
MAX_HELD_BYTES): iterative with an explicit stack, never recursive (a chain of 5,000 one-link
nodes raised RecursionError), yielding to the event loop at least every SLICE seconds, and
checking declared sizes against what the children hold before passing bytes on (a node
claiming 5 bytes must not yield 200; a listing must not show 1 TB for 5 bytes).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import cached_property
from itertools import islice
from typing import Protocol

import trio
from multiformats import CID

from ..cid import CidLike, cid_from_bytes, cid_text, to_cid
from ..errors import CodecError, IpfsKitError
from . import data as fs
from .pbscan import DAG_PB, RAW, Link, read_link, split

#: Levels below the root a file DAG (or fetch_dag) may go. Kubo has no limit; its balanced
#: layout is ~5 levels deep for a terabyte and trickle DAGs stay under ~40, so 4,096 refuses no
#: real file while keeping a hostile chain of one-link nodes a clear error, not a crash.
MAX_DEPTH = 4096
#: HAMT shards below a sharded folder's root: its hash (murmur3, 64 bits) is used up after
#: 64 levels even at the smallest fanout (2); Kubo's 256-way shards need at most 8.
MAX_HAMT_DEPTH = 64
#: Bytes of ancestor blocks a walk may hold at once (each stacked level keeps its block to
#: read the next link from): bounds memory whatever the shape (a real file holds a few KiB).
MAX_HELD_BYTES = 64 * 1024 * 1024
#: Blocks fetch_dag may have found but not read yet: a real DAG walked depth-first leaves
#: depth x fanout (~2,000) or one big folder's entries (a 4 MiB block holds ~100,000).
MAX_PENDING = 1 << 18
#: Longest stretch of work between two yields to the event loop.
SLICE = 0.01
#: Links split (skipped over) between two looks at the clock when a block is opened.
_SPLIT_STEP = 2048


class BlockGetter(Protocol):
    """What the exporter reads through: ``async get(cid) -> bytes`` (verified); one that also
    has ``prefetch(cids)`` is told which blocks will be read soon (Bitswap asks peers)."""

    async def get(self, cid: CidLike) -> bytes: ...


class NotAFileError(IpfsKitError, ValueError):
    """cat was asked for a directory (or a directory listing for a file)."""


class DagTooDeepError(CodecError):
    """A DAG walk passed its depth (or held-bytes) limit; names the CID where it stopped."""


class UnixFSSizeError(CodecError):
    """A UnixFS file's declared sizes disagree with its children or its bytes; names the CID."""


class Pacer:
    """Yields to the trio loop once SLICE seconds of work have passed since the last yield.

    Blocks in the store's memory tier come back without a checkpoint, so a long walk over
    local blocks would otherwise hold the loop from its start to its end.
    """

    def __init__(self) -> None:
        self._due = time.monotonic() + SLICE

    async def __call__(self) -> None:
        if time.monotonic() >= self._due:
            await trio.lowlevel.checkpoint()
            self._due = time.monotonic() + SLICE


class _Holding:
    """The bytes of the blocks a walk keeps on its stack, against MAX_HELD_BYTES."""

    def __init__(self) -> None:
        self.bytes = 0

    def take(self, node: Node) -> None:
        self.bytes += len(node.block)
        if self.bytes > MAX_HELD_BYTES:
            raise DagTooDeepError(
                f"walking the DAG at {node.cid} would hold over {MAX_HELD_BYTES >> 20} MiB of "
                "ancestor blocks at once (a hostile or broken DAG)")

    def drop(self, node: Node) -> None:
        self.bytes -= len(node.block)


@dataclass(frozen=True)
class Node:
    """One decoded UnixFS node: its links are read from ``block`` on demand."""

    cid: CID
    block: bytes  # the whole block: a raw leaf's bytes, or the dag-pb encoding
    unixfs: fs.UnixFSData | None  # None for a raw block
    links_end: int = 0  # dag-pb: the links are block[:links_end]
    link_count: int = 0

    @property
    def raw(self) -> bytes:
        return self.block if self.unixfs is None else b""

    @property
    def kind(self) -> str:
        return "file" if self.unixfs is None else fs.TYPE_NAMES[self.unixfs.type]

    @property
    def size(self) -> int:
        """Content bytes (files: as declared, checked against the node's own blocksizes)."""
        if self.unixfs is None:
            return len(self.block)
        return self.unixfs.content_size if self.unixfs.type in (fs.FILE, fs.RAW) else 0

    @property
    def target(self) -> bytes:
        """A symlink's target, as stored."""
        return bytes(self.unixfs.data) if self.unixfs is not None else b""

    @property
    def type_code(self) -> int:
        """The ``Type`` Kubo's ls gives: 2 file (raw leaves too), 1 folder, 4 symlink."""
        if self.unixfs is None or self.unixfs.type in (fs.FILE, fs.RAW):
            return fs.FILE
        if self.unixfs.type in (fs.DIRECTORY, fs.HAMT_SHARD):
            return fs.DIRECTORY
        return self.unixfs.type

    def iter_links(self) -> _LinkCursor:
        return _LinkCursor(self)

    @cached_property
    def links(self) -> tuple[Link, ...]:
        return tuple(self.iter_links())


class _LinkCursor:
    """Reads a node's links one at a time, where the walk left off."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.pos = 0
        self.index = 0

    def __iter__(self) -> _LinkCursor:
        return self

    def __next__(self) -> Link:
        if self.pos >= self.node.links_end:
            raise StopIteration
        link, self.pos = read_link(self.node.block, self.pos, self.node.cid)
        self.index += 1
        return link


async def resolve(blocks: BlockGetter, cid: CidLike, pacer: Pacer | None = None) -> Node:
    """Fetch and decode one UnixFS node; a malformed one raises CodecError naming the CID.

    A file node's own sizes are checked here: its filesize must equal its data plus its
    blocksizes, one blocksize per link (its children are checked as they are read).
    """
    cid = to_cid(cid)
    block = await blocks.get(cid)
    if cid.codec.code == RAW:
        return Node(cid, block, None)
    if cid.codec.code != DAG_PB:
        raise CodecError(f"{cid} uses codec {cid.codec.name}, not UnixFS (dag-pb or raw)")
    # Split over a view, and the UnixFS Data payload kept as a view of the block: a leaf's
    # 256 KiB are not copied at all on the way out (a 64 MiB cat used to copy 128 MiB).
    view = memoryview(block)
    layout, pos, count = split(view, cid, max_links=_SPLIT_STEP)
    while layout is None:
        if pacer is not None:
            await pacer()
        layout, pos, count = split(view, cid, pos, count, count + _SPLIT_STEP)
    if layout.data is None:
        raise CodecError(f"malformed UnixFS node {cid}: dag-pb node without Data")
    unixfs = fs.decode(layout.data, cid, view=True)
    if unixfs.type in (fs.FILE, fs.RAW):
        if len(unixfs.blocksizes) != count:
            raise UnixFSSizeError(f"UnixFS file node {cid} has {count} links but "
                                  f"{len(unixfs.blocksizes)} blocksizes")
        own = len(unixfs.data) + sum(unixfs.blocksizes)
        if unixfs.filesize is not None and unixfs.filesize != own:
            raise UnixFSSizeError(
                f"UnixFS file node {cid} declares {unixfs.filesize} bytes but holds {own} "
                f"({len(unixfs.data)} inline + {sum(unixfs.blocksizes)} in its children)")
    return Node(cid, block, unixfs, layout.links_end, count)


def _not_a_file(node: Node) -> NotAFileError:
    if node.kind in ("directory", "hamt-sharded-directory"):
        return NotAFileError(f"{node.cid} is a directory; use `get` or `ls`")
    if node.kind == "symlink":
        target = node.target.decode("utf-8", "replace")
        return NotAFileError(f"{node.cid} is a symlink (to {target!r}), not a file; "
                             "`get` writes it as a link")
    return NotAFileError(f"{node.cid} is a UnixFS {node.kind}, not a file")


async def cat(blocks: BlockGetter, cid: CidLike) -> AsyncIterator[bytes | memoryview]:
    """A file's bytes, in order, block by block; every block's size checked before its bytes
    are passed on, so a lying DAG ends in UnixFSSizeError, never in wrong bytes."""
    pacer = Pacer()
    root = await resolve(blocks, cid, pacer)
    if root.kind not in ("file", "raw"):
        raise _not_a_file(root)
    async for chunk in _file_bytes(blocks, root, pacer):
        yield chunk


#: Children asked for ahead of reading them (prefetch), per level; refilled at half.
_WINDOW = 64


@dataclass
class _Frame:
    """A file node being read: its links are turned into CIDs (and prefetched) a window
    ahead of the child being read."""

    node: Node
    cursor: _LinkCursor
    queue: deque[CID] = field(default_factory=deque)
    taken: int = 0

    def next_child(self, blocks: BlockGetter) -> tuple[CID, int] | None:
        """The next child and the size its parent declares for it; None after the last."""
        if len(self.queue) < _WINDOW // 2:
            more = islice(self.cursor, _WINDOW - len(self.queue))
            batch = [cid_from_bytes(link.cid) for link in more]
            prefetch = getattr(blocks, "prefetch", None)
            if prefetch is not None and batch:
                prefetch(batch)
            self.queue.extend(batch)
        if not self.queue:
            return None
        assert self.node.unixfs is not None
        size = self.node.unixfs.blocksizes[self.taken]
        self.taken += 1
        return self.queue.popleft(), size


async def _file_bytes(blocks: BlockGetter, root: Node, pacer: Pacer
                      ) -> AsyncIterator[bytes | memoryview]:
    """Depth-first over a file DAG with an explicit stack (MAX_DEPTH levels at most)."""
    if root.unixfs is None:
        if root.block:
            yield root.block
        return
    held = _Holding()
    stack: list[_Frame] = []

    def enter(node: Node) -> bytes | memoryview:
        assert node.unixfs is not None
        if len(stack) > MAX_DEPTH:
            raise DagTooDeepError(f"the file DAG is over {MAX_DEPTH} levels deep at "
                                  f"{node.cid} (a hostile or broken DAG)")
        held.take(node)
        stack.append(_Frame(node, node.iter_links()))
        return node.unixfs.data

    first = enter(root)
    if first:
        yield first
    while stack:
        await pacer()
        frame = stack[-1]
        step = frame.next_child(blocks)
        if step is None:
            held.drop(frame.node)
            stack.pop()
            continue
        child_cid, expected = step
        child = await resolve(blocks, child_cid, pacer)
        if child.unixfs is not None and child.unixfs.type not in (fs.FILE, fs.RAW):
            raise CodecError(f"{child.cid}: a {child.kind} node inside a file")
        if child.size != expected:
            raise UnixFSSizeError(
                f"UnixFS file node {frame.node.cid} says its child {child.cid} holds "
                f"{expected} bytes, but the child holds {child.size}")
        if child.unixfs is None:
            if child.block:
                yield child.block
            continue
        data = enter(child)
        if data:
            yield data


@dataclass(frozen=True)
class DirEntry:
    """One folder entry; ``cid`` (a CID object) is built only when asked for."""

    name: str
    raw_cid: bytes
    tsize: int

    @cached_property
    def cid(self) -> CID:
        return cid_from_bytes(self.raw_cid)

    @cached_property
    def cid_text(self) -> str:
        return cid_text(self.raw_cid)


async def ls(blocks: BlockGetter, cid: CidLike, pacer: Pacer | None = None
             ) -> AsyncIterator[DirEntry]:
    """A directory's entries in link order (HAMT shards walked, their name prefixes removed)."""
    pacer = pacer or Pacer()
    node = await resolve(blocks, cid, pacer)
    if node.kind == "directory":
        for link in node.iter_links():
            await pacer()
            yield DirEntry(link.name or "", link.cid, link.tsize or 0)
    elif node.kind == "hamt-sharded-directory":
        async for entry in _shard_entries(blocks, node, pacer):
            yield entry
    else:
        raise NotAFileError(f"{node.cid} is a {node.kind}, not a directory")


async def _shard_entries(blocks: BlockGetter, root: Node, pacer: Pacer
                         ) -> AsyncIterator[DirEntry]:
    """The entries of a HAMT-sharded folder, sub-shards walked depth-first with a stack."""
    held = _Holding()
    stack: list[tuple[Node, _LinkCursor, int]] = []

    def enter(node: Node) -> None:
        assert node.unixfs is not None
        if len(stack) > MAX_HAMT_DEPTH:
            raise DagTooDeepError(f"the HAMT-sharded folder is over {MAX_HAMT_DEPTH} shards "
                                  f"deep at {node.cid} (a hostile or broken DAG)")
        held.take(node)
        fanout = node.unixfs.fanout or 256
        stack.append((node, node.iter_links(), len(f"{fanout - 1:X}")))

    enter(root)
    while stack:
        await pacer()
        node, links, prefix = stack[-1]
        link = next(links, None)
        if link is None:
            held.drop(node)
            stack.pop()
            continue
        name = link.name or ""
        if len(name) < prefix:
            raise CodecError(f"{node.cid}: HAMT link name {name!r} is shorter than its prefix")
        if len(name) > prefix:
            yield DirEntry(name[prefix:], link.cid, link.tsize or 0)
            continue
        child = await resolve(blocks, link.cid, pacer)  # a sub-shard
        if child.kind != "hamt-sharded-directory":
            raise CodecError(f"{child.cid}: expected a HAMT shard, found a {child.kind}")
        enter(child)


async def fetch_dag(blocks: BlockGetter, cid: CidLike) -> int:
    """Read every block of a DAG through ``blocks`` (through Bitswap, that stores them all,
    ready to pin); returns how many. The first children of each node are prefetched; a DAG
    deeper than MAX_DEPTH, or one that leaves over MAX_PENDING blocks to read at once, is
    refused (DagTooDeepError naming the block where it stopped)."""
    pacer = Pacer()
    seen: set[bytes] = set()
    root = to_cid(cid)
    stack: list[tuple[bytes, int]] = [(bytes(root), 0)]  # binary CIDs: ~100 B an entry
    prefetch = getattr(blocks, "prefetch", None)
    while stack:
        await pacer()
        key, depth = stack.pop()
        if key in seen:
            continue
        seen.add(key)
        current = cid_from_bytes(key)
        data = await blocks.get(current)
        if current.codec.code != DAG_PB:
            continue
        layout, pos, count = split(data, current, max_links=_SPLIT_STEP)
        while layout is None:
            await pacer()
            layout, pos, count = split(data, current, pos, count, count + _SPLIT_STEP)
        if count and depth >= MAX_DEPTH:
            raise DagTooDeepError(f"the DAG under {root} is over {MAX_DEPTH} levels deep at "
                                  f"{current} (a hostile or broken DAG)")
        if len(stack) + count > MAX_PENDING:
            raise DagTooDeepError(f"the DAG under {root} leaves over {MAX_PENDING} blocks to "
                                  f"read at once at {current} (a hostile or broken DAG)")
        children: list[bytes] = []
        pos = 0
        while pos < layout.links_end:
            link, pos = read_link(data, pos, current)
            if link.cid not in seen:
                children.append(link.cid)
            await pacer()
        if prefetch is not None and children:
            prefetch([cid_from_bytes(child) for child in children[:_WINDOW]])
        stack.extend((child, depth + 1) for child in reversed(children))
    return len(seen)
