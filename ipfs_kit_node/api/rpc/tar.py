"""A streaming tar writer (sans-IO: headers from ``tarfile.TarInfo``, bytes out) and Kubo's
``get``: a file, symlink or folder tree as a tar stream, optionally gzipped, read block by
block so memory stays flat whatever the size."""

from __future__ import annotations

import tarfile
import zlib
from collections.abc import AsyncIterator

from multiformats import CID

from ...dagwalk import file_bytes, get_node
from ...errors import ApiError
from ...unixfs.exporter import MAX_DEPTH, BlockGetter, DagTooDeepError, Node, Pacer, ls

BLOCK = 512


def header(name: str, kind: bytes, size: int = 0, mode: int = 0o644, mtime: int = 0,
           target: str = "") -> bytes:
    """One entry's tar header (PAX, so long names and any UTF-8 survive)."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    info.mode = mode
    info.mtime = mtime
    info.linkname = target
    return info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="surrogateescape")


def padding(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


END = b"\0" * (2 * BLOCK)


def _mode(node: Node, default: int) -> int:
    return node.unixfs.mode if node.unixfs is not None and node.unixfs.mode is not None \
        else default


def _mtime(node: Node) -> int:
    return node.unixfs.mtime[0] if node.unixfs is not None and node.unixfs.mtime else 0


async def tar_entries(blocks: BlockGetter, root: Node, name: str
                      ) -> AsyncIterator[bytes | memoryview]:
    """The tar stream of ``root`` named ``name``: folders depth-first in link order."""
    pacer = Pacer()
    stack: list[tuple[str, AsyncIterator[tuple[str, CID]], set[str]]] = []

    async def children(node: Node) -> AsyncIterator[tuple[str, CID]]:
        async for entry in ls(blocks, node.cid, pacer):
            yield entry.name, entry.cid

    async def one(path: str, node: Node) -> AsyncIterator[bytes | memoryview]:
        if node.kind in ("directory", "hamt-sharded-directory"):
            if len(stack) >= MAX_DEPTH:
                raise DagTooDeepError(f"folders over {MAX_DEPTH} levels deep at {node.cid}")
            yield header(path + "/", tarfile.DIRTYPE, mode=_mode(node, 0o755),
                         mtime=_mtime(node))
            stack.append((path, children(node), set()))
        elif node.kind == "symlink":
            target = node.target.decode("utf-8", "surrogateescape")
            yield header(path, tarfile.SYMTYPE, target=target, mtime=_mtime(node))
        elif node.kind in ("file", "raw"):
            yield header(path, tarfile.REGTYPE, node.size, _mode(node, 0o644), _mtime(node))
            async for chunk in file_bytes(blocks, node, 0, node.size):
                yield chunk
            yield padding(node.size)
        else:
            raise ApiError(f"{node.cid}: a UnixFS {node.kind} cannot go into a tar", 500)

    async for piece in one(name, root):
        yield piece
    while stack:
        path, items, seen = stack[-1]
        item = await anext(items, None)
        if item is None:
            stack.pop()
            continue
        child_name, cid = item
        if not child_name or "/" in child_name or child_name in (".", ".."):
            raise ApiError(f"{cid}: unsafe entry name {child_name[:100]!r} in a folder", 500)
        if child_name in seen:  # a second entry would be written through the first (symlink)
            raise ApiError(f"{cid}: the name {child_name[:100]!r} appears twice in the folder "
                           f"{path[:200]!r}", 500)
        seen.add(child_name)
        async for piece in one(f"{path}/{child_name}", await get_node(blocks, cid, pacer)):
            yield piece
    yield END


async def gzipped(chunks: AsyncIterator[bytes | memoryview], level: int
                  ) -> AsyncIterator[bytes]:
    packer = zlib.compressobj(level, zlib.DEFLATED, 31)
    async for chunk in chunks:
        out = packer.compress(chunk)
        if out:
            yield out
    yield packer.flush()


async def batched(chunks: AsyncIterator[bytes | memoryview], size: int = 256 * 1024
                  ) -> AsyncIterator[bytes | memoryview]:
    """Small pieces (headers, padding) gathered into fewer HTTP chunks; a piece of ``size``
    or more (a file's block) goes out as it is, behind what was gathered (a 64 MiB `get`
    copied every byte twice here)."""
    buf = bytearray()
    async for chunk in chunks:
        if len(chunk) >= size:
            if buf:
                yield bytes(buf)
                buf.clear()
            yield chunk
            continue
        buf += chunk
        if len(buf) >= size:
            yield bytes(buf)
            buf.clear()
    if buf:
        yield bytes(buf)
