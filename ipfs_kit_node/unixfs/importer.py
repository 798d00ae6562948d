"""UnixFS import: the DAGs ``ipfs add`` makes, CIDs identical to Kubo's and Helia's.

Pure and synchronous: bytes in, blocks out, nothing held but one pending link list per tree
level, so a file of any size streams through in bounded memory. The rules that decide CIDs
(matching ipfs-unixfs-importer and boxo, Kubo's importer):

- each chunk is a leaf: a raw block (raw leaves) or a dag-pb node holding UnixFS
  ``{Type: File, Data: chunk, filesize}`` (``Type: Raw`` in the trickle layout, as boxo);
- balanced layout: a file of one chunk is that leaf itself; leaves are grouped ``max_links``
  at a time, left to right, into parent nodes ``{Type: File, filesize, blocksizes}`` whose
  links have Name "" and Tsize = the child's whole encoded subtree; groups are reduced level by
  level until one root remains, and a lone last group is still wrapped in a parent;
- trickle layout (``trickle=True``): see ``_trickle``;
- directories are ``{Type: Directory}`` nodes with links sorted by name bytes, or HAMT shards
  once the flat node would pass ``shard_threshold`` (see hamt.py for the layout and the rule);
- symlinks are ``{Type: Symlink, Data: target}`` nodes; UnixFS 1.5 mode and mtime go on the
  root node of each entry when asked for (never on a raw block, as boxo).

``ImportParams.kubo`` turns ``ipfs add`` options into parameters with Kubo's implications
(a non-sha2-256 hash means CIDv1, CIDv1 means raw leaves unless told otherwise, metadata turns
raw leaves off); ``import_path``/``import_stream``/``import_bytes`` are the one entry point the
CLI and the RPC ``add`` share.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ..cidtext import cid_text
from ..codecs.dagpb import PBLink
from ..codecs.dagpb import encode as encode_pb
from ..codecs.varint import encode as varint
from .chunker import fixed as fixed_chunks
from .chunker import split
from .data import DIRECTORY, FILE, SYMLINK, UnixFSData
from .data import RAW as UNIXFS_RAW
from .params import (
    DAG_PB,
    KUBO_DEFAULT,
    NO_META,
    RAW,
    Block,
    Entry,
    ImportParams,
    Meta,
    cid_bytes_for,
    meta_for,
)


def _file_leaf(chunk: bytes, kind: int = FILE) -> bytes:
    """dag-pb {Data: UnixFS {Type, Data: chunk, filesize}} with one copy of the chunk
    (the general encoders would copy it three times)."""
    n = varint(len(chunk))
    head = b"\x08" + bytes((kind,))
    if chunk:
        unixfs_len = 3 + len(n) + len(chunk) + 1 + len(n)
        return b"".join((b"\x0a", varint(unixfs_len), head, b"\x12", n, chunk, b"\x18", n))
    return b"\x0a\x04" + head + b"\x18\x00"


def _node(links: list[PBLink], unixfs: UnixFSData, params: ImportParams) -> Block:
    data = encode_pb(links, unixfs.encode())
    return Block(cid_bytes_for(data, DAG_PB, params), data)


class FileBuilder:
    """Balanced layout: feed chunks, collect the blocks it gives back, then ``finish()``.

    The first leaf is held back until a second chunk comes: if it stays the only one it is
    the file's root, and carries the file's metadata (a different block)."""

    def __init__(self, params: ImportParams = KUBO_DEFAULT, meta: Meta = NO_META) -> None:
        self.params = params
        self.meta = meta
        self._levels: list[list[Entry]] = [[]]
        self._reduced: list[int] = [0]  # how many nodes of each level went into a parent
        self._chunks = 0
        self._first: tuple[bytes, Block] | None = None

    def _leaf(self, chunk: bytes) -> tuple[Block, Entry]:
        if self.params.raw_leaves:
            block = Block(cid_bytes_for(chunk, RAW, self.params), chunk)
            return block, Entry(block.cid_bytes, len(chunk), len(chunk))
        data = _file_leaf(chunk)
        block = Block(cid_bytes_for(data, DAG_PB, self.params), data)
        return block, Entry(block.cid_bytes, len(data), len(chunk))

    def add_chunk(self, chunk: bytes) -> list[Block]:
        self._chunks += 1
        block, leaf = self._leaf(chunk)
        out: list[Block] = []
        if self._chunks == 1:
            self._first = (chunk, block)
        else:
            if self._first is not None:
                out.append(self._first[1])
                self._first = None
            out.append(block)
        self._push(0, leaf, out)
        return out

    def _push(self, level: int, entry: Entry, out: list[Block]) -> None:
        self._levels[level].append(entry)
        if len(self._levels[level]) == self.params.max_links:
            self._reduce(level, out)

    def _reduce(self, level: int, out: list[Block], meta: Meta = NO_META) -> None:
        if self._first is not None:
            out.append(self._first[1])
            self._first = None
        children = self._levels[level]
        self._levels[level] = []
        self._reduced[level] += len(children)
        # Empty leaves carry nothing and are not linked (as ipfs-unixfs-importer does).
        children = [c for c in children if c.filesize > 0]
        block = _node(
            [PBLink(c.cid_bytes, "", c.tsize) for c in children],
            UnixFSData(FILE, filesize=sum(c.filesize for c in children),
                       blocksizes=tuple(c.filesize for c in children),
                       mode=meta.mode, mtime=meta.mtime),
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
            self.add_chunk(b"")
        if self._chunks == 1 and self._first is not None:
            chunk, block = self._first
            self._first = None
            if self.meta and not self.params.raw_leaves:
                data = encode_pb([], UnixFSData(FILE, chunk, len(chunk), mode=self.meta.mode,
                                                mtime=self.meta.mtime).encode())
                block = Block(cid_bytes_for(data, DAG_PB, self.params), data)
            size = len(chunk)
            return [block], Entry(block.cid_bytes, len(block.data), size)
        level = 0
        while True:
            pending = self._levels[level]
            higher = level + 1 < len(self._levels) and any(self._levels[level + 1:])
            if len(pending) == 1 and self._reduced[level] == 0 and not higher:
                return out, pending[0]
            if pending:  # the node made here is the root if nothing is above it
                root = not higher and not any(self._reduced[level + 1:])
                self._reduce(level, out, self.meta if root else NO_META)
            level += 1


#: Subtrees of each depth a trickle node takes before going one deeper (boxo's depthRepeat).
TRICKLE_REPEAT = 4


class _Leaves:
    """Chunks turned into leaves on demand, with the one-chunk lookahead trickle needs."""

    def __init__(self, chunks: Iterator[bytes], params: ImportParams) -> None:
        self._chunks = chunks
        self._params = params
        self._next = next(chunks, None)

    @property
    def done(self) -> bool:
        return self._next is None

    def take(self) -> tuple[Block, Entry]:
        chunk = self._next
        assert chunk is not None
        self._next = next(self._chunks, None)
        if self._params.raw_leaves:
            block = Block(cid_bytes_for(chunk, RAW, self._params), chunk)
            return block, Entry(block.cid_bytes, len(chunk), len(chunk))
        data = _file_leaf(chunk, UNIXFS_RAW)  # boxo's trickle leaves are UnixFS Raw nodes
        block = Block(cid_bytes_for(data, DAG_PB, self._params), data)
        return block, Entry(block.cid_bytes, len(data), len(chunk))


def _trickle(leaves: _Leaves, params: ImportParams, max_depth: int, meta: Meta = NO_META
             ) -> Generator[Block, None, Entry]:
    """boxo's trickle layout: a node takes up to max_links leaves, then TRICKLE_REPEAT
    subtrees of depth 1, 2, ... (below ``max_depth``; unbounded at the root) while data lasts.
    Never reduced to a single leaf; an empty file is a File node with no links. Blocks are
    yielded as made (memory: one link list per level), the node's Entry returned."""
    children: list[Entry] = []
    while len(children) < params.max_links and not leaves.done:
        block, leaf = leaves.take()
        yield block
        children.append(leaf)
    depth = 1
    while (max_depth < 0 or depth < max_depth) and not leaves.done:
        for _ in range(TRICKLE_REPEAT):
            if leaves.done:
                break
            children.append((yield from _trickle(leaves, params, depth)))
        depth += 1
    block = _node([PBLink(c.cid_bytes, "", c.tsize) for c in children],
                  UnixFSData(FILE, filesize=sum(c.filesize for c in children),
                             blocksizes=tuple(c.filesize for c in children),
                             mode=meta.mode, mtime=meta.mtime), params)
    yield block
    return Entry(block.cid_bytes, len(block.data) + sum(c.tsize for c in children),
                 sum(c.filesize for c in children))


def chunks(stream: BinaryIO, params: ImportParams | int) -> Iterator[bytes]:
    """The chunks of a file: fixed ``chunk_size`` ones, or rabin/buzhash cuts."""
    if isinstance(params, int):
        return fixed_chunks(stream, params)
    if params.chunker is None:
        return fixed_chunks(stream, params.chunk_size)
    return split(stream, params.chunker)


def import_stream(stream: BinaryIO, params: ImportParams = KUBO_DEFAULT,
                  meta: Meta | None = None) -> Iterator[Block | Entry]:
    """Blocks of one file as they are made, then its Entry last (``meta``: the file's
    metadata; by default --mode/--mtime of ``params``)."""
    meta = meta_for(None, params) if meta is None else meta
    if params.trickle:
        leaves = _Leaves(chunks(stream, params), params)
        yield (yield from _trickle(leaves, params, -1, meta))
        return
    builder = FileBuilder(params, meta)
    for chunk in chunks(stream, params):
        yield from builder.add_chunk(chunk)
    blocks, entry = builder.finish()
    yield from blocks
    yield entry


def import_bytes(data: bytes, params: ImportParams = KUBO_DEFAULT) -> tuple[list[Block], Entry]:
    items = list(import_stream(io.BytesIO(data), params))
    entry = items.pop()
    assert isinstance(entry, Entry)
    return [b for b in items if isinstance(b, Block)], entry


def symlink_node(target: bytes, params: ImportParams, meta: Meta = NO_META
                 ) -> tuple[Block, Entry]:
    """A UnixFS symlink: the target as stored (bytes: a name need not be UTF-8)."""
    block = _node([], UnixFSData(SYMLINK, target, mtime=meta.mtime), params)
    return block, Entry(block.cid_bytes, len(block.data), 0)


@dataclass
class DirectoryBuilder:
    """A folder's entries; ``finish`` gives a flat node, or a HAMT when over the threshold."""

    params: ImportParams = KUBO_DEFAULT
    entries: dict[str, Entry] = field(default_factory=dict)
    meta: Meta = NO_META

    def add(self, name: str, entry: Entry) -> None:
        if not name or "/" in name:
            raise ValueError(f"invalid directory entry name {name!r}")
        self.entries[name] = entry

    def finish_all(self) -> tuple[list[Block], Entry]:
        """Every block of the folder (sub-shards first, its root last) and its Entry."""
        from .hamt import build_shard, needs_shard

        filesize = sum(e.filesize for e in self.entries.values())
        unixfs = UnixFSData(DIRECTORY, mode=self.meta.mode, mtime=self.meta.mtime)
        if not needs_shard(self.entries, unixfs, self.params):
            names = sorted(self.entries, key=lambda n: n.encode("utf-8"))
            links = [PBLink(self.entries[n].cid_bytes, n, self.entries[n].tsize) for n in names]
            block = _node(links, unixfs, self.params)
            tsize = len(block.data) + sum(link.tsize or 0 for link in links)
            return [block], Entry(block.cid_bytes, tsize, filesize)
        blocks, root = build_shard(self.entries, self.params, self.meta)
        return blocks, Entry(root.cid_bytes, root.tsize, filesize)

    def finish(self) -> tuple[Block, Entry]:
        """A flat folder's one block (kept for callers that build small folders)."""
        blocks, entry = self.finish_all()
        if len(blocks) != 1:
            raise ValueError("this folder is HAMT-sharded (several blocks): use finish_all")
        return blocks[0], entry


@dataclass(frozen=True)
class Added:
    """One ``added CID NAME`` line: a file, symlink or folder finished importing."""

    name: str
    entry: Entry
    is_dir: bool


def import_path(path: Path, params: ImportParams = KUBO_DEFAULT, name: str | None = None,
                ) -> Iterator[Block | Added]:
    """A file, symlink or folder tree: blocks as made, an Added for each entry.

    Order as ``ipfs add -r``: a folder's entries in name order, the folder after them; with
    ``wrap_with_directory`` a folder named "" holding the entry comes last. Symlinks are
    stored as symlinks (never followed); dot-files inside folders only with ``hidden``.
    """
    yield from import_paths([path], params, [name if name is not None else path.name])


def import_paths(paths: list[Path], params: ImportParams = KUBO_DEFAULT,
                 names: list[str] | None = None) -> Iterator[Block | Added]:
    """Several top-level paths, as ``ipfs add A B``; ``wrap_with_directory`` puts them all in
    one folder (Kubo's -w), whose Added (name "") comes last."""
    names = names if names is not None else [p.name for p in paths]
    wrapper = DirectoryBuilder(params)
    for path, name in zip(paths, names, strict=True):
        last: Added | None = None
        for item in _import_tree(path, params, name, top=True):
            if isinstance(item, Added):
                last = item
            yield item
        if last is not None and params.wrap_with_directory:
            wrapper.add(name, last.entry)
    if params.wrap_with_directory:
        blocks, entry = wrapper.finish_all()
        yield from blocks
        yield Added("", entry, True)


def import_named_stream(stream: BinaryIO, name: str, params: ImportParams = KUBO_DEFAULT
                        ) -> Iterator[Block | Added]:
    """A stream (stdin) as one file called ``name`` ("" for none: Kubo then prints the CID
    as its name), wrapped in a folder with ``wrap_with_directory``."""
    entry: Entry | None = None
    for made in import_stream(stream, params):
        if isinstance(made, Entry):
            entry = made
        else:
            yield made
    assert entry is not None
    yield Added(name, entry, False)
    if params.wrap_with_directory:
        wrapper = DirectoryBuilder(params)
        wrapper.add(name or cid_text(entry.cid_bytes), entry)
        blocks, wrapped = wrapper.finish_all()
        yield from blocks
        yield Added("", wrapped, True)


def _import_tree(path: Path, params: ImportParams, name: str, top: bool
                 ) -> Iterator[Block | Added]:
    st = path.lstat()
    meta = meta_for(st, params)
    if stat.S_ISLNK(st.st_mode):
        block, entry = symlink_node(os.fsencode(os.readlink(path)), params,
                                    Meta(None, meta.mtime))
        yield block
        yield Added(name, entry, False)
        return
    if stat.S_ISDIR(st.st_mode):
        builder = DirectoryBuilder(params, meta=meta)
        with os.scandir(path) as it:
            children = sorted(it, key=lambda e: os.fsencode(e.name))
        for child in children:
            if child.name.startswith(".") and not params.hidden:
                continue
            last: Added | None = None
            for item in _import_tree(Path(child.path), params, f"{name}/{child.name}", False):
                if isinstance(item, Added):
                    last = item
                yield item
            assert last is not None
            builder.add(child.name, last.entry)
        blocks, entry = builder.finish_all()
        yield from blocks
        yield Added(name, entry, True)
        return
    if not stat.S_ISREG(st.st_mode) and not top:
        return  # sockets, fifos, devices: Kubo skips them too
    with open(path, "rb") as f:
        for made in import_stream(f, params, meta):
            yield Added(name, made, False) if isinstance(made, Entry) else made
