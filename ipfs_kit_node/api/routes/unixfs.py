"""UnixFS over the control API: cat (streamed, offset/length), get (tar), ls (streamed) and
stat, read through a Blocks getter; arguments are Kubo paths (CID, CID/a/b, /ipfs/CID/a/b)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from ...dagwalk import file_bytes
from ...unixfs.exporter import BlockGetter, Node, NotAFileError, Pacer, ls, resolve
from ...unixfs.exporter import _not_a_file as not_a_file
from ..router import Request, Response, Router
from ..rpc.paths import resolve_arg
from ..rpc.tar import batched, gzipped, tar_entries

#: Bytes of listing gathered into one chunk of the response body; with ``stream=true`` what
#: is ready goes out at least this often (entries resolved from peers may come slowly).
_CHUNK = 64 * 1024
_FLUSH_AFTER = 0.2


async def ls_links(blocks: BlockGetter, cid: Any, pacer: Pacer) -> AsyncIterator[dict[str, Any]]:
    """A folder's entries as Kubo's ls gives them, each child resolved (for Type and Size)."""
    async for entry in ls(blocks, cid, pacer):
        child = await resolve(blocks, entry.cid, pacer)
        yield {"Name": entry.name, "Hash": entry.cid_text, "Size": child.size,
               "Type": child.type_code, "Target": _target(child), **unixfs_meta(child)}


def unixfs_meta(node: Node) -> dict[str, Any]:
    """UnixFS 1.5 mode and mtime when stored (`add --preserve-mode/--preserve-mtime`), named
    as the JS RPC clients read them: Mode in octal, Mtime seconds, MtimeNsecs."""
    out: dict[str, Any] = {}
    if node.unixfs is not None and node.unixfs.mode is not None:
        out["Mode"] = f"{node.unixfs.mode:04o}"
    if node.unixfs is not None and node.unixfs.mtime is not None:
        out["Mtime"], out["MtimeNsecs"] = node.unixfs.mtime
    return out


def _target(node: Node) -> str:
    """A symlink's target as stored: bytes that are not UTF-8 survive JSON as surrogates."""
    return node.target.decode("utf-8", "surrogateescape") if node.kind == "symlink" else ""


async def _first_and_rest(items: AsyncIterator[Any]) -> tuple[list[Any], AsyncIterator[Any]]:
    """Pull the first item now, so errors before any output get a proper status."""
    try:
        return [await anext(items)], items
    except StopAsyncIteration:
        return [], items


def register_unixfs_routes(router: Router, blocks: BlockGetter) -> None:
    async def cat_(request: Request) -> Response:
        """A file's bytes from ``offset`` for ``length`` (Kubo's cat), reading only the blocks
        that hold them."""
        resolved = await resolve_arg(blocks, request.require())
        node = resolved.node
        if node is None:
            raise NotAFileError(f"{resolved.cid} is not UnixFS (dag-pb or raw); use dag/get")
        if not resolved.is_file:
            raise not_a_file(node)
        offset = request.int("offset", 0, maximum=2**62)
        length = request.int("length", -1, minimum=-1, maximum=2**62)
        end = node.size if length < 0 else min(node.size, offset + length)
        first, stream = await _first_and_rest(file_bytes(blocks, node, offset, end))
        headers = [("x-stream-output", "1"), ("x-content-length", str(max(0, end - offset)))]
        if not first:
            return Response(body=b"", content_type="text/plain", headers=headers)

        async def body() -> AsyncIterator[bytes]:
            yield first[0]
            async for chunk in stream:
                yield chunk

        return Response(body=body(), content_type="text/plain", headers=headers)

    async def get(request: Request) -> Response:
        """Kubo's get: a tar of the file or folder (gzipped with ``compress``)."""
        arg = request.require()
        resolved = await resolve_arg(blocks, arg)
        if resolved.node is None:
            raise NotAFileError(f"{arg} is not UnixFS (dag-pb or raw); use dag/get")
        name = arg.rstrip("/").rsplit("/", 1)[-1] if "/" in arg.strip("/") else str(
            resolved.cid)
        level = request.int("compression-level", -1, minimum=-1, maximum=9)
        body = tar_entries(blocks, resolved.node, name)
        if request.flag("compress") or request.flag("C"):
            body = gzipped(body, 6 if level < 0 else level)
        return Response(body=batched(body), content_type="application/x-tar",
                        headers=[("x-stream-output", "1")])

    async def ls_(request: Request) -> Response:
        """Streamed, a chunk at a time as the entries are resolved, so a huge folder neither
        holds the loop nor waits whole in memory; ``stream=true`` gives one JSON object per
        entry and line (as Kubo's), else the one JSON document Kubo gives."""
        cid = (await resolve_arg(blocks, request.require())).cid
        head = json.dumps(str(cid))
        first, links = await _first_and_rest(ls_links(blocks, cid, Pacer()))
        streamed = request.flag("stream")

        async def body() -> AsyncIterator[bytes]:
            buf = bytearray() if streamed else bytearray(f'{{"Objects":[{{"Hash":{head},'
                                                          '"Links":['.encode())
            count = 0
            flush_at = time.monotonic() + _FLUSH_AFTER
            async for link in _chain(first, links):
                if streamed:
                    buf += f'{{"Objects":[{{"Hash":{head},"Links":[{json.dumps(link)}]}}]}}\n' \
                        .encode()
                else:
                    buf += (b"," if count else b"") + json.dumps(link).encode()
                count += 1
                if len(buf) >= _CHUNK or (streamed and time.monotonic() >= flush_at):
                    yield bytes(buf)
                    buf.clear()
                    flush_at = time.monotonic() + _FLUSH_AFTER
            if streamed and not count:
                buf += f'{{"Objects":[{{"Hash":{head},"Links":[]}}]}}\n'.encode()
            elif not streamed:
                buf += b"]}]}\n"
            yield bytes(buf)

        return Response(body=body(), content_type="application/json")

    async def stat(request: Request) -> Response:
        cid = request.cid()
        node = await resolve(blocks, cid)
        kind = "directory" if "directory" in node.kind else node.kind
        answer: dict[str, Any] = {"Hash": str(cid), "Type": kind, "Size": node.size}
        if kind == "symlink":
            answer["Target"] = _target(node)
        answer.update(unixfs_meta(node))
        return Response.json(answer)

    router.add("POST", "/api/v0/cat", cat_)
    router.add("POST", "/api/v0/get", get)
    router.add("POST", "/api/v0/ls", ls_)
    router.add("POST", "/api/v0/unixfs/stat", stat)


async def _chain(first: list[Any], rest: AsyncIterator[Any]) -> AsyncIterator[Any]:
    for item in first:
        yield item
    async for item in rest:
        yield item
