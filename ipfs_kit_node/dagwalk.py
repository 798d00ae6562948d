"""Content paths and DAG walks for the gateway and CAR export.

``resolve_path`` follows ``/ipfs/{cid}/a/b`` through UnixFS folders (HAMT shards by name hash,
reading only the shards on the way) and DAG-CBOR links, keeping every block it read (a CAR
carries them so a client can verify the path) and the CID of each segment (X-Ipfs-Roots).
``car_blocks`` yields a CAR's blocks in depth-first order without duplicates for
``dag-scope=block|entity|all`` and ``entity-bytes``; ``file_bytes`` reads a byte range of a
UnixFS file, visiting only the blocks that hold it.

Blocks come through any ``BlockGetter`` (the node passes Bitswap: local, else fetched and
verified). Walks are iterative and bounded like the exporter's (MAX_DEPTH, MAX_PENDING), and
hand the loop back between blocks.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import mmh3
from multiformats import CID

from .cid import CidLike, cid_from_bytes, to_cid
from .codecs import cborlinks
from .codecs.cborlinks import DAG_CBOR, DAG_JSON, Link
from .errors import CodecError, PathNotFoundError
from .unixfs import data as fs
from .unixfs.exporter import (
    MAX_DEPTH,
    MAX_HAMT_DEPTH,
    MAX_PENDING,
    BlockGetter,
    DagTooDeepError,
    Node,
    Pacer,
    UnixFSSizeError,
    resolve,
)
from .unixfs.pbscan import DAG_PB, RAW, read_link, split

IDENTITY = 0x00
#: Children asked for ahead of reading them (Bitswap prefetch), refilled at half.
WINDOW = 64
SCOPES = ("all", "entity", "block")


def is_identity(cid: CID) -> bool:
    """Whether the multihash is ``identity`` (its first varint byte 0x00; reading
    ``cid.hashfun`` costs a validated registry lookup per block)."""
    return bytes(cid.digest)[:1] == b"\x00"


async def get_block(blocks: BlockGetter, cid: CID) -> bytes:
    """A block's bytes; identity CIDs carry theirs inline (never stored, never sent)."""
    if is_identity(cid):
        return bytes(cid.raw_digest)
    return await blocks.get(cid)


#: Decoded folder nodes kept (splitting a 1,000-entry folder costs ~3 ms a request), bounded
#: in count and in block bytes; files are never kept (they are read once, in order).
NODE_CACHE_COUNT = 1024
NODE_CACHE_BYTES = 32 << 20
_node_cache: OrderedDict[bytes, Node] = OrderedDict()
_node_cache_bytes = 0


async def get_node(blocks: BlockGetter, cid: CID, pacer: Pacer | None = None) -> Node:
    """A decoded UnixFS node (dag-pb or raw); identity CIDs too."""
    global _node_cache_bytes
    if is_identity(cid):
        return await resolve(_Inline(cid), cid, pacer)
    key = bytes(cid)
    node = _node_cache.get(key)
    if node is not None:
        _node_cache.move_to_end(key)
        return node
    node = await resolve(blocks, cid, pacer)
    if node.kind in ("directory", "hamt-sharded-directory"):
        _node_cache[key] = node
        _node_cache_bytes += len(node.block)
        while len(_node_cache) > NODE_CACHE_COUNT or _node_cache_bytes > NODE_CACHE_BYTES:
            _node_cache_bytes -= len(_node_cache.popitem(last=False)[1].block)
    return node


class _Inline:
    def __init__(self, cid: CID) -> None:
        self._data = bytes(cid.raw_digest)

    async def get(self, cid: CidLike) -> bytes:
        return self._data


@dataclass(frozen=True)
class Resolved:
    """Where a content path ends, and what it took to get there."""

    roots: tuple[CID, ...]  # the CID of each logical segment, the request's root first
    path_blocks: tuple[tuple[CID, bytes], ...]  # every block read, in order, the terminal last
    cid: CID  # the terminal
    node: Node | None  # the terminal as UnixFS (dag-pb or raw), else None

    @property
    def block(self) -> bytes:
        return self.path_blocks[-1][1]

    @property
    def is_dir(self) -> bool:
        return self.node is not None and self.node.kind in (
            "directory", "hamt-sharded-directory")

    @property
    def is_file(self) -> bool:
        return self.node is not None and self.node.kind in ("file", "raw")


async def resolve_path(blocks: BlockGetter, root: CidLike, segments: Sequence[str]
                       ) -> Resolved:
    """Follow ``segments`` from ``root``; PathNotFoundError names the first that fails."""
    pacer = Pacer()
    cid = to_cid(root)
    roots = [cid]
    read: list[tuple[CID, bytes]] = []
    node, value = await _open(blocks, cid, pacer, read)
    rest = list(segments)
    while rest:
        segment = rest.pop(0)
        if node is not None:
            child = await _child(blocks, node, segment, pacer, read)
        else:
            child, value = _in_value(value, segment, cid)
            while child is None and rest:  # a path inside the same DAG-CBOR block
                child, value = _in_value(value, rest.pop(0), cid)
            if child is None:
                raise PathNotFoundError(f"{segment!r} in {cid} is a value, not a link")
        if child is None:
            raise PathNotFoundError(f"no link named {segment!r} under {cid}")
        cid = child
        roots.append(cid)
        node, value = await _open(blocks, cid, pacer, read)
    return Resolved(tuple(roots), tuple(read), cid, node)


async def _open(blocks: BlockGetter, cid: CID, pacer: Pacer, read: list[tuple[CID, bytes]]
                ) -> tuple[Node | None, Any]:
    if cid.codec.code in (DAG_PB, RAW):
        node = await get_node(blocks, cid, pacer)
        read.append((cid, node.block))
        return node, None
    data = await get_block(blocks, cid)
    read.append((cid, data))
    return None, _decode_value(cid, data)


def _decode_value(cid: CID, data: bytes) -> Any:
    if cid.codec.code == DAG_CBOR:
        return cborlinks.decode(data, cid)
    if cid.codec.code == DAG_JSON:
        try:
            return _json_links(json.loads(data))
        except (ValueError, RecursionError):
            raise CodecError(f"malformed DAG-JSON block {cid}") from None
    return None  # a codec we do not path into: its block is all there is


def _json_links(value: Any) -> Any:
    """DAG-JSON's ``{"/": "bafy..."}`` as Link (iteratively: untrusted nesting)."""
    def convert(item: Any) -> Any:
        if isinstance(item, dict) and set(item) == {"/"} and isinstance(item["/"], str):
            try:
                return Link(bytes(to_cid(item["/"])))
            except ValueError:
                return item
        return item

    root = [convert(value)]
    stack: list[Any] = [root]
    while stack:
        container = stack.pop()
        keys = range(len(container)) if isinstance(container, list) else list(container)
        for key in keys:
            child = convert(container[key])
            container[key] = child
            if isinstance(child, dict | list) and not isinstance(child, Link):
                stack.append(child)
    return root[0]


def _in_value(value: Any, segment: str, cid: CID) -> tuple[CID | None, Any]:
    """One step inside a decoded block: (the CID reached, or None and the value reached)."""
    if isinstance(value, dict) and segment in value:
        item = value[segment]
    elif isinstance(value, list) and segment.isascii() and segment.isdigit() \
            and int(segment) < len(value):
        item = value[int(segment)]
    else:
        raise PathNotFoundError(f"no field {segment!r} in {cid}")
    if isinstance(item, Link):
        return cid_from_bytes(item), None
    return None, item


#: Folders whose name -> CID maps are kept (content never changes under a CID): a site's
#: folders are looked up again and again. Bounded by count and by an estimate of the bytes
#: held (names, CIDs and the dict's own cost per entry); a folder over a quarter of the budget
#: is not kept.
DIR_CACHE_FOLDERS = 256
DIR_CACHE_BYTES = 32 << 20
_DIR_ENTRY_OVERHEAD = 200  # a dict slot, a str and a bytes object (CPython, measured ~190)
_dir_cache: OrderedDict[bytes, tuple[dict[str, bytes], int]] = OrderedDict()
_dir_cache_bytes = 0


def _names_size(names: dict[str, bytes]) -> int:
    return 256 + sum(len(n) + len(c) + _DIR_ENTRY_OVERHEAD for n, c in names.items())


async def _child(blocks: BlockGetter, node: Node, name: str, pacer: Pacer,
                 read: list[tuple[CID, bytes]]) -> CID | None:
    global _dir_cache_bytes
    if node.kind == "directory":
        key = bytes(node.cid.digest)
        kept = _dir_cache.get(key)
        if kept is None:
            names: dict[str, bytes] = {}
            for link in node.iter_links():
                await pacer()
                names.setdefault(link.name or "", link.cid)
            size = _names_size(names)
            if size <= DIR_CACHE_BYTES // 4:
                _dir_cache[key] = (names, size)
                _dir_cache_bytes += size
                while len(_dir_cache) > DIR_CACHE_FOLDERS or _dir_cache_bytes > DIR_CACHE_BYTES:
                    _dir_cache_bytes -= _dir_cache.popitem(last=False)[1][1]
        else:
            names = kept[0]
            _dir_cache.move_to_end(key)
        found = names.get(name)
        return cid_from_bytes(found) if found is not None else None
    if node.kind == "hamt-sharded-directory":
        return await _shard_lookup(blocks, node, name, pacer, read)
    raise PathNotFoundError(f"{node.cid} is a {node.kind}: it has no entry {name!r}")


async def _shard_lookup(blocks: BlockGetter, node: Node, name: str, pacer: Pacer,
                        read: list[tuple[CID, bytes]]) -> CID | None:
    """Find ``name`` in a HAMT-sharded folder by its hash: one shard per level."""
    key = name.encode("utf-8")
    hashes: list[int] = []
    depth = 0
    while True:
        assert node.unixfs is not None
        fanout = node.unixfs.fanout or 256
        bits = fanout.bit_length() - 1
        if fanout & (fanout - 1) or not bits:
            raise CodecError(f"{node.cid}: HAMT fanout {fanout} is not a power of two")
        label = f"{_hash_bits(key, hashes, depth * bits, bits):0{len(f'{fanout - 1:X}')}X}"
        found = None
        for link in node.iter_links():
            await pacer()
            if link.name == label + name:
                return cid_from_bytes(link.cid)
            if link.name == label:
                found = link
        if found is None:
            return None
        depth += 1
        if depth > MAX_HAMT_DEPTH:
            raise DagTooDeepError(f"the HAMT-sharded folder is over {MAX_HAMT_DEPTH} shards "
                                  f"deep at {node.cid} (a hostile or broken DAG)")
        child = cid_from_bytes(found.cid)
        node = await get_node(blocks, child, pacer)
        if node.kind != "hamt-sharded-directory":
            raise CodecError(f"{child}: expected a HAMT shard, found a {node.kind}")
        read.append((child, node.block))


def _hash_bits(key: bytes, hashes: list[int], start: int, bits: int) -> int:
    """Bits [start, start + bits) of the name's murmur3 stream, as the HAMT writer reads it."""
    end = start + bits
    while len(hashes) * 64 < end:
        extra = bytes((len(hashes),)) if hashes else b""
        hashes.append(mmh3.hash64(key + extra, 0, True, False)[0])
    first, last = start // 64, (end - 1) // 64
    stream = 0
    for h in hashes[first:last + 1]:
        stream = stream << 64 | h
    span = (last - first + 1) * 64
    return (stream >> (span - (end - first * 64))) & ((1 << bits) - 1)


# -- byte ranges of files ----------------------------------------------------------------------


def entity_range(spec: str, size: int) -> tuple[int, int] | None:
    """``entity-bytes=from:to`` as [start, end) within a file of ``size`` bytes (None: empty,
    or wholly outside). ValueError if malformed."""
    first, sep, last = spec.partition(":")
    if not sep:
        raise ValueError(f"entity-bytes must be from:to, got {spec!r}")
    start = _offset(first, size, "from")
    end = size if last == "*" else _offset(last, size, "to") + 1
    start, end = max(0, start), min(size, end)
    return (start, end) if start < end else None


def _offset(text: str, size: int, what: str) -> int:
    if not text.lstrip("-").isascii() or not text.lstrip("-").isdigit() or len(text) > 20:
        raise ValueError(f"entity-bytes {what} must be an integer or *, got {text!r}")
    value = int(text)
    return size + value if value < 0 else value


class Pending(Protocol):
    """A block read under way (``TieredStore.read_soon``)."""

    async def result(self) -> bytes: ...


@dataclass
class _FileFrame:
    node: Node
    children: list[tuple[bytes, int, int]]  # (cid, offset, size) of the children in range
    next: int = 0
    asked: int = 0
    started: int = 0  # children up to here were offered to read_soon
    #: Reads under way of the children after ``next`` (index -> (cid, read)).
    ahead: dict[int, tuple[CID, Pending]] = field(default_factory=dict)


#: Children of a file read ahead of the one being sent, when the getter can start reads of
#: local blocks (``read_soon``): each disk read and hash check runs on a worker thread, so a
#: window of them in flight keeps the second core busy while the loop sends; only local ones
#: (a fetch from peers belongs to the reading task's Bitswap session).
READ_AHEAD = 8
#: Reads ahead held by the whole walk, all levels together: a level keeps the reads of its
#: children after the one it descends through until the walk comes back to it, so without
#: this a deep DAG of big siblings could hold 7 blocks a level over MAX_DEPTH levels. Twice
#: a level's window: a level under another that holds its 7 still reads 8 ahead.
READ_AHEAD_TOTAL = 2 * READ_AHEAD


#: CID objects of file children, by binary CID: building one costs ~5 us (multiformats'
#: instance cache hashes each part), a third of the event loop's work for a block read from
#: memory, and a file served again names the same children. Cleared when full (~300 B an
#: entry: only CIDs of CHILD_CID_MAX bytes or fewer, never identity ones, which carry their
#: data and may be as big as a block).
CHILD_CID_CACHE = 8192
CHILD_CID_MAX = 64
_child_cids: dict[bytes, CID] = {}


def _child_cid(raw: bytes) -> CID:
    cid = _child_cids.get(raw)
    if cid is None:
        cid = cid_from_bytes(raw)
        if len(raw) <= CHILD_CID_MAX and not is_identity(cid):
            if len(_child_cids) >= CHILD_CID_CACHE:
                _child_cids.clear()
            _child_cids[bytes(raw)] = cid
    return cid


class _Given:
    def __init__(self, data: bytes) -> None:
        self._data = data

    async def get(self, cid: CidLike) -> bytes:
        return self._data


async def file_nodes(blocks: BlockGetter, root: Node, start: int, end: int
                     ) -> AsyncIterator[tuple[Node, bytes | memoryview]]:
    """The nodes of a file holding bytes [start, end), depth-first, each with its own content
    in that range; children outside it are never read. Sizes are checked as ``cat`` checks
    them, so a lying DAG ends in UnixFSSizeError, never in wrong bytes."""
    pacer = Pacer()
    if root.unixfs is None:
        yield root, root.block[start:end]
        return
    stack: list[_FileFrame] = []
    prefetch = getattr(blocks, "prefetch", None)
    read_soon: Callable[[CID], Pending | None] | None = getattr(blocks, "read_soon", None)
    # Peers are asked ahead (prefetch) once a block is not here: a local file, read ahead
    # through read_soon, is not checked a second time block by block.
    missing = read_soon is None
    held = 0  # reads ahead in all frames' ``ahead`` (READ_AHEAD_TOTAL at most)

    def enter(node: Node, base: int) -> bytes | memoryview:
        assert node.unixfs is not None
        if len(stack) > MAX_DEPTH:
            raise DagTooDeepError(f"the file DAG is over {MAX_DEPTH} levels deep at "
                                  f"{node.cid} (a hostile or broken DAG)")
        own = node.unixfs.data
        offset = base + len(own)
        children = []
        for link, size in zip(node.iter_links(), node.unixfs.blocksizes, strict=True):
            if offset < end and offset + size > start:
                children.append((link.cid, offset, size))
            offset += size
        stack.append(_FileFrame(node, children))
        return own[max(0, start - base):max(0, end - base)]

    yield root, enter(root, 0)
    while stack:
        await pacer()
        frame = stack[-1]
        if frame.next >= len(frame.children):
            stack.pop()
            continue
        if read_soon is not None:
            stop = min(frame.next + READ_AHEAD, len(frame.children))
            frame.started = max(frame.started, frame.next)  # those passed were read in turn
            while frame.started < stop and held < READ_AHEAD_TOTAL:
                cid = _child_cid(frame.children[frame.started][0])
                pending = None if is_identity(cid) else read_soon(cid)
                if pending is not None:
                    frame.ahead[frame.started] = (cid, pending)
                    held += 1
                elif not is_identity(cid):
                    missing = True
                frame.started += 1
        if prefetch is not None and missing and frame.asked - frame.next < WINDOW // 2:
            frame.asked = max(frame.asked, frame.next)
            batch = frame.children[frame.asked:frame.asked + WINDOW]
            frame.asked += len(batch)
            wanted = [_child_cid(c) for c, _, _ in batch]
            wanted = [c for c in wanted if not is_identity(c)]
            if wanted:
                prefetch(wanted)
        ahead = frame.ahead.pop(frame.next, None)
        raw_cid, base, expected = frame.children[frame.next]
        frame.next += 1
        if ahead is not None:
            held -= 1
            cid, pending = ahead
            child = await resolve(_Given(await pending.result()), cid, pacer)
        else:
            child = await get_node(blocks, _child_cid(raw_cid), pacer)
        if child.unixfs is not None and child.unixfs.type not in (fs.FILE, fs.RAW):
            raise CodecError(f"{child.cid}: a {child.kind} node inside a file")
        if child.size != expected:
            raise UnixFSSizeError(
                f"UnixFS file node {frame.node.cid} says its child {child.cid} holds "
                f"{expected} bytes, but the child holds {child.size}")
        if child.unixfs is None:
            yield child, child.block[max(0, start - base):max(0, end - base)]
        else:
            yield child, enter(child, base)


async def file_bytes(blocks: BlockGetter, root: Node, start: int, end: int
                     ) -> AsyncIterator[bytes | memoryview]:
    """Bytes [start, end) of a UnixFS file (``root`` from ``resolve_path`` or ``resolve``);
    a chunk may be a view of the block holding it (no copy on the way to a socket)."""
    async for _, chunk in file_nodes(blocks, root, start, end):
        if chunk:
            yield chunk


# -- CAR walks ---------------------------------------------------------------------------------


def child_links(cid: CID, data: bytes) -> list[bytes]:
    """The binary CIDs a block links to, in order (dag-pb, DAG-CBOR, DAG-JSON; others none)."""
    code = cid.codec.code
    if code == DAG_PB:
        layout, _, _ = split(data, cid)
        assert layout is not None
        out = []
        pos = 0
        while pos < layout.links_end:
            link, pos = read_link(data, pos, cid)
            out.append(link.cid)
        return out
    if code in (DAG_CBOR, DAG_JSON):
        return [bytes(link) for link in cborlinks.links(_decode_value(cid, data))]
    return []


async def car_blocks(blocks: BlockGetter, resolved: Resolved, scope: str = "all",
                     entity_bytes: str | None = None) -> AsyncIterator[tuple[CID, bytes]]:
    """The blocks of a CAR for ``resolved``: the path's blocks, then the terminal's per
    ``scope`` (``entity-bytes`` implies entity), depth-first, each block once, identity
    blocks left out (their bytes are in their CID)."""
    seen: set[bytes] = set()
    for cid, data in resolved.path_blocks:
        if bytes(cid.digest) not in seen and not is_identity(cid):
            seen.add(bytes(cid.digest))
            yield cid, data
    if entity_bytes is not None:
        scope = "entity"
    if scope == "block":
        return
    node = resolved.node
    if scope == "entity":
        if node is None or node.kind == "symlink" or node.kind == "directory":
            return
        if node.kind == "hamt-sharded-directory":
            async for item in _walk(blocks, resolved.cid, resolved.block, seen,
                                    shards_only=True):
                yield item
            return
        span = (0, node.size)
        if entity_bytes is not None:
            span = entity_range(entity_bytes, node.size) or (0, 0)
        if span[0] >= span[1]:
            return
        async for child, _ in file_nodes(blocks, node, *span):
            key = bytes(child.cid.digest)
            if key not in seen and not is_identity(child.cid):
                seen.add(key)
                yield child.cid, child.block
        return
    async for item in _walk(blocks, resolved.cid, resolved.block, seen):
        yield item


async def _walk(blocks: BlockGetter, root: CID, root_block: bytes, seen: set[bytes],
                shards_only: bool = False) -> AsyncIterator[tuple[CID, bytes]]:
    """Everything under ``root`` (already sent), depth-first in link order, each block once.

    The stack holds binary CIDs (~40 B each); its size and depth are bounded as fetch_dag's.
    """
    pacer = Pacer()
    prefetch = getattr(blocks, "prefetch", None)
    stack: list[tuple[bytes, int, bool]] = []  # (cid, depth, prefetched)

    def push(cid: CID, data: bytes, depth: int) -> None:
        children = child_links(cid, data)
        if shards_only:
            children = _subshards(cid, data)
        if children and depth >= MAX_DEPTH:
            raise DagTooDeepError(f"the DAG under {root} is over {MAX_DEPTH} levels deep at "
                                  f"{cid} (a hostile or broken DAG)")
        if len(stack) + len(children) > MAX_PENDING:
            raise DagTooDeepError(f"the DAG under {root} leaves over {MAX_PENDING} blocks to "
                                  f"read at once at {cid} (a hostile or broken DAG)")
        stack.extend((child, depth + 1, False) for child in reversed(children))

    push(root, root_block, 0)
    while stack:
        await pacer()
        if prefetch is not None and not stack[-1][2]:
            ask = []
            for i in range(len(stack) - 1, max(-1, len(stack) - 1 - WINDOW), -1):
                raw, depth, asked = stack[i]
                if asked:
                    break
                stack[i] = (raw, depth, True)
                cid = cid_from_bytes(raw)
                if not is_identity(cid) and bytes(cid.digest) not in seen:
                    ask.append(cid)
            if ask:
                prefetch(ask)
        raw, depth, _ = stack.pop()
        cid = cid_from_bytes(raw)
        key = bytes(cid.digest)
        if key in seen:
            continue
        data = await get_block(blocks, cid)
        if not is_identity(cid):
            seen.add(key)
            yield cid, data
        push(cid, data, depth)


def _subshards(cid: CID, data: bytes) -> list[bytes]:
    """The links of a HAMT shard that lead to sub-shards (their names are the label alone)."""
    if cid.codec.code != DAG_PB:
        return []
    layout, _, _ = split(data, cid)
    assert layout is not None
    if layout.data is None:
        return []
    unixfs = fs.decode(layout.data, cid)
    if unixfs.type != fs.HAMT_SHARD:
        return []
    width = len(f"{(unixfs.fanout or 256) - 1:X}")
    out = []
    pos = 0
    while pos < layout.links_end:
        link, pos = read_link(data, pos, cid)
        if len(link.name or "") == width:
            out.append(link.cid)
    return out
