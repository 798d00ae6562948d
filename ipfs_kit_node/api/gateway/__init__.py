"""The HTTP gateway: ``GET``/``HEAD /ipfs/{cid}[/path]`` as the path and trustless gateway
specs (specs.ipfs.tech/http-gateways) describe it.

Deserialized answers (files with Range and multi-range, folders as ``index.html`` or a
listing), and verifiable ones: ``?format=raw`` (one block) and ``?format=car`` (CARv1,
depth-first, no duplicates, ``dag-scope`` and ``entity-bytes``). Blocks come through the node's
Bitswap getter, so blocks held by peers are fetched (and verified) as they are read; bodies
stream, so memory stays flat whatever the size. Read-only: it never runs an RPC command.

``GatewayRouter`` plugs into ``HttpServer`` in place of a Router; ``GatewayPolicy`` lets only
GET and HEAD through.
"""

from __future__ import annotations

import hashlib
import html
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from urllib.parse import quote, unquote

import trio
from multiformats import CID

from ...cid import CidLike, cid_bytes, cid_from_text, cid_text
from ...codecs import car
from ...dagwalk import Resolved, car_blocks, file_bytes, resolve_path
from ...errors import (
    BlockNotFoundError,
    BlockUnavailableError,
    CodecError,
    InvalidCidError,
    IpfsKitError,
    PathNotFoundError,
)
from ...logs import get_logger
from ...service import TaskStatus
from ...unixfs.exporter import BlockGetter, Node, ls
from ..metrics import HttpMetrics
from ..router import Request, Response, Router, status_of
from ..server import HttpServer
from .negotiate import (
    CAR_TYPE,
    RAW,
    NegotiationError,
    RangeNotSatisfiable,
    car_params,
    content_disposition,
    content_type,
    etag_matches,
    parse_ranges,
    response_format,
)

log = get_logger(__name__)

IMMUTABLE = "public, max-age=29030400, immutable"
#: Bumped when the listing's HTML changes, so caches drop old listings (the spec's advice).
LISTING_VERSION = "ikn1"
SNIFF_BYTES = 512
_CODEC_TYPES = {0x71: "application/vnd.ipld.dag-cbor", 0x0129: "application/vnd.ipld.dag-json",
                0x0200: "application/json", 0x51: "application/cbor"}

__all__ = ["Gateway", "GatewayPolicy", "GatewayRouter", "GatewayServer"]


def _text(status: int, message: str, headers: list[tuple[str, str]] | None = None
          ) -> Response:
    return Response(status=status, body=message.encode() + b"\n",
                    content_type="text/plain; charset=utf-8", headers=headers or [])


class GatewayPolicy:
    """GET and HEAD only; a failed stream is aborted (a client then sees a broken transfer,
    never a short body that looks whole)."""

    stream_errors = "abort"

    def admit(self, request: Request) -> Response | None:
        if request.method not in ("GET", "HEAD"):
            return _text(405, f"method {request.method} not allowed: the gateway is read-only",
                         [("allow", "GET, HEAD")])
        return None

    def not_found(self, request: Request) -> Response:
        return _text(404, f"{request.path}: not found (the gateway serves /ipfs/{{cid}})")


class GatewayServer(HttpServer):
    """The gateway's listeners; the first bound URL goes to ``url_file`` (REPO/gateway, which
    IPIP-280 clients such as ipfsspec read from ``$IPFS_PATH/gateway``), removed on exit."""

    def __init__(self, gateway: Gateway, listen: Sequence[str], *, url_file: Path | None = None,
                 metrics: HttpMetrics | None = None) -> None:
        super().__init__("gateway", GatewayRouter(gateway), listen=listen,
                         policy=GatewayPolicy(), metrics=metrics, config_key="[gateway] listen")
        self.url_file = url_file

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(partial(HttpServer.run, self))
                if self.url_file is not None and self.urls:
                    self.url_file.write_text(self.urls[0] + "\n")
                task_status.started()
        finally:
            if self.url_file is not None and self.urls:
                self.url_file.unlink(missing_ok=True)


class GatewayRouter(Router):
    """Every path under /ipfs/ and /ipns/ goes to the gateway; its edge maps errors to the
    gateway specs' statuses."""

    def __init__(self, gateway: Gateway) -> None:
        super().__init__()
        self.gateway = gateway

    def has(self, path: str) -> bool:
        return path.startswith(("/ipfs/", "/ipns/")) or path in ("/ipfs", "/ipns")

    def route_label(self, method: str, path: str) -> str:
        return "/ipfs" if path.startswith("/ipfs") else "/ipns" if self.has(path) else "other"

    def is_streaming(self, method: str, path: str) -> bool:
        return False

    def answer_now(self, request: Request) -> Response | None:
        try:
            return self.gateway.kept(request)
        except Exception:  # dispatch meets the same error and maps it
            return None

    async def dispatch(self, request: Request) -> Response:
        try:
            return await self.gateway.handle(request)
        except NegotiationError as exc:
            return _text(exc.status, str(exc))
        except InvalidCidError as exc:
            return _text(400, f"invalid path {request.path!r}: {exc}")
        except PathNotFoundError as exc:
            return _text(404, f"failed to resolve {request.path}: {exc}")
        except BlockUnavailableError as exc:
            if "within" in str(exc):  # peers were asked and none answered in time
                return _text(504, f"failed to fetch {request.path}: {exc}",
                             [("retry-after", "30")])
            return _text(404, f"failed to resolve {request.path}: {exc}")
        except BlockNotFoundError as exc:
            return _text(404, f"failed to resolve {request.path}: {exc}")
        except CodecError as exc:
            return _text(502, f"{request.path}: the DAG is malformed: {exc}")
        except IpfsKitError as exc:
            return _text(status_of(exc), f"{request.path}: {exc}")
        except Exception as exc:  # the edge: a bug or an input we did not foresee
            log.error("gateway request failed", path=request.path[:300],
                      error=f"{type(exc).__name__}: {exc}"[:300],
                      exc_info=not isinstance(exc, RecursionError))
            return _text(500, f"{request.path}: internal error: {type(exc).__name__}")


class Gateway:
    """Answers one gateway request; ``blocks`` reads through Bitswap, ``is_local`` says
    whether a block is here without asking anyone (``Cache-Control: only-if-cached``)."""

    def __init__(self, blocks: BlockGetter, is_local: Callable[[CID], bool]) -> None:
        self.blocks: BlockGetter = _Blocks(blocks, is_local)
        self.is_local = is_local
        self._answers: OrderedDict[tuple[str, ...], _Answer] = OrderedDict()
        self._answer_bytes = 0

    def kept(self, request: Request) -> Response | None:
        """The kept answer to ``request``, if there is one (see ``handle``)."""
        key = self._key(request)
        return None if key is None else self._kept(key, request)

    def _key(self, request: Request) -> tuple[str, ...] | None:
        if request.header("range") is not None \
                or "only-if-cached" in (request.header("cache-control") or ""):
            return None
        return _answer_key(request)

    def _kept(self, key: tuple[str, ...], request: Request) -> Response | None:
        hit = self._answers.get(key)
        if hit is None:
            return None
        if not self.is_local(hit.cid):
            self._forget(key)
            return None
        self._answers.move_to_end(key)
        if etag_matches(request.header("if-none-match"), hit.etag):
            return Response(status=304, body=b"", content_type="text/plain",
                            headers=hit.headers)
        return Response(body=hit.body, content_type=hit.content_type, headers=hit.headers)

    async def handle(self, request: Request) -> Response:
        """A small answer is kept (content under a CID never changes): a site's assets and a
        dataset's small files are asked for again and again, and resolving the path and
        building the headers cost more than the bytes. Range and only-if-cached requests
        always take the full path; a kept answer whose block left the store is dropped."""
        key = self._key(request)
        if key is not None:
            hit = self._kept(key, request)
            if hit is not None:
                return hit
        response, cid = await self._handle(request)
        if key is not None and cid is not None and response.status == 200 \
                and isinstance(response.body, bytes) and len(response.body) <= ANSWER_MAX_BODY:
            headers = [(k, v) for k, v in response.headers if k != "content-length"]
            etag = next((v for k, v in headers if k == "etag"), "")
            self._forget(key)
            answer = _Answer(cid, response.body, response.content_type, headers, etag,
                             _answer_size(key, response.body, headers))
            self._answers[key] = answer
            self._answer_bytes += answer.size
            while self._answer_bytes > ANSWER_CACHE_BYTES:
                self._forget(next(iter(self._answers)))
        return response

    def _forget(self, key: tuple[str, ...]) -> None:
        old = self._answers.pop(key, None)
        if old is not None:
            self._answer_bytes -= old.size

    async def _handle(self, request: Request) -> tuple[Response, CID | None]:
        """The answer, and the CID whose presence keeps it valid (None: not to be kept)."""
        found: list[CID] = []
        response = await self._answer(request, found)
        return response, found[-1] if found else None

    async def _answer(self, request: Request, found: list[CID]) -> Response:
        parts = request.path.split("/")
        if parts[1] == "ipns":
            return _text(501, "/ipns/ is not supported by this gateway yet; use /ipfs/{cid}")
        if len(parts) < 3 or not parts[2]:
            return _text(400, "missing CID: use /ipfs/{cid}[/path]")
        cid = cid_from_text(unquote(parts[2]))
        segments = [unquote(p) for p in parts[3:] if p]
        trailing = request.path.endswith("/") and len(parts) > 3
        fmt = response_format(request.arg("format"), request.header("accept"))
        params = car_params(request.arg("dag-scope"), request.arg("entity-bytes")) \
            if fmt == "car" else None
        if "only-if-cached" in (request.header("cache-control") or "") \
                and not self.is_local(cid):
            return Response(status=412, body=b"", content_type="text/plain")
        resolved = await resolve_path(self.blocks, cid, segments)
        found.append(resolved.cid)
        headers = [("x-ipfs-path", request.path),
                   ("x-ipfs-roots", ",".join(_cid_text(r) for r in resolved.roots)),
                   ("cache-control", IMMUTABLE)]
        if request.arg("format") is None:  # Accept chose this answer: caches must key on it
            headers.append(("vary", "Accept"))
            if fmt is not None:
                headers.append(("content-location", _with_format(request, fmt)))
        if fmt == "raw":
            return self._raw(request, resolved, headers)
        if fmt == "car":
            assert params is not None
            return self._car(request, resolved, params.scope, params.entity_bytes, headers)
        node = resolved.node
        if node is None:  # not UnixFS: the block as it is, typed by its codec
            ctype = _CODEC_TYPES.get(resolved.cid.codec.code, "application/octet-stream")
            etag = f'"{_cid_text(resolved.cid)}"'
            return self._bytes(request, resolved.block, etag, ctype, headers)
        if resolved.is_dir:
            if not trailing and not request.path.endswith("/"):
                query = request_query(request)
                return Response(status=301, body=b"", content_type="text/html",
                                headers=[*headers, ("location", request.path + "/" + query)])
            return await self._dir(request, resolved, headers)
        if node.kind == "symlink":
            return self._bytes(request, node.target, f'"{_cid_text(resolved.cid)}"',
                               "text/plain; charset=utf-8", headers)
        name = segments[-1] if segments else ""
        return await self._file(request, node, name, headers)

    # -- trustless --------------------------------------------------------------------------

    def _raw(self, request: Request, resolved: Resolved, headers: list[tuple[str, str]]
             ) -> Response:
        etag = f'"{_cid_text(resolved.cid)}.raw"'
        if etag_matches(request.header("if-none-match"), etag):
            return _not_modified(etag, headers)
        filename = request.arg("filename") or f"{_cid_text(resolved.cid)}.bin"
        return Response(body=resolved.block, content_type=RAW, headers=[
            *headers, ("etag", etag), ("x-content-type-options", "nosniff"),
            ("content-disposition", content_disposition("attachment", filename))])

    def _car(self, request: Request, resolved: Resolved, scope: str, entity_bytes: str | None,
             headers: list[tuple[str, str]]) -> Response:
        key = f"{request.path}\0{scope}\0{entity_bytes or ''}".encode()
        etag = f'"{_cid_text(resolved.roots[0])}.car.{hashlib.sha256(key).hexdigest()[:16]}"'
        if etag_matches(request.header("if-none-match"), etag):
            return _not_modified(etag, headers)
        filename = request.arg("filename") or f"{_cid_text(resolved.roots[0])}.car"
        return Response(body=self._car_body(resolved, scope, entity_bytes),
                        content_type=CAR_TYPE, headers=[
                            *headers, ("etag", etag), ("x-content-type-options", "nosniff"),
                            ("accept-ranges", "none"),
                            ("content-disposition", content_disposition("attachment",
                                                                        filename))])

    async def _car_body(self, resolved: Resolved, scope: str, entity_bytes: str | None
                        ) -> AsyncIterator[bytes]:
        yield car.encode_header([resolved.cid])
        batch = bytearray()
        async for cid, data in car_blocks(self.blocks, resolved, scope, entity_bytes):
            batch += car.encode_block(cid, data)
            if len(batch) >= 64 * 1024:
                yield bytes(batch)
                batch.clear()
        if batch:
            yield bytes(batch)

    # -- deserialized -----------------------------------------------------------------------

    def _bytes(self, request: Request, data: bytes, etag: str, ctype: str,
               headers: list[tuple[str, str]]) -> Response:
        if etag_matches(request.header("if-none-match"), etag):
            return _not_modified(etag, headers)
        return Response(body=data, content_type=ctype, headers=[*headers, ("etag", etag)])

    async def _file(self, request: Request, node: Node, name: str,
                    headers: list[tuple[str, str]]) -> Response:
        etag = f'"{_cid_text(node.cid)}"'
        if etag_matches(request.header("if-none-match"), etag):
            return _not_modified(etag, headers)
        size = node.size
        filename = request.arg("filename")
        head = b"".join([c async for c in file_bytes(self.blocks, node, 0,
                                                     min(SNIFF_BYTES, size))])
        ctype = content_type(filename or name, head)
        out = [*headers, ("etag", etag), ("accept-ranges", "bytes")]
        download = request.arg("download")
        if filename or download == "true":
            kind = "attachment" if download == "true" else "inline"
            out.append(("content-disposition", content_disposition(kind, filename or name)))
        try:
            ranges = parse_ranges(request.header("range"), size)
        except RangeNotSatisfiable as exc:
            return _text(416, str(exc), [*headers, ("content-range", f"bytes */{size}")])
        if ranges is None:
            return self._stream(200, [(0, size)], node, ctype, [
                *out, ("content-length", str(size))])
        if len(ranges) == 1:
            start, end = ranges[0]
            return self._stream(206, ranges, node, ctype, [
                *out, ("content-range", f"bytes {start}-{end - 1}/{size}"),
                ("content-length", str(end - start))])
        boundary = hashlib.sha256(f"{node.cid}{ranges}".encode()).hexdigest()[:24]
        parts = [(f"--{boundary}\r\ncontent-type: {ctype}\r\ncontent-range: bytes "
                  f"{s}-{e - 1}/{size}\r\n\r\n").encode() for s, e in ranges]
        length = sum(len(p) + (e - s) + 2 for p, (s, e) in zip(parts, ranges, strict=True))
        closing = f"--{boundary}--\r\n".encode()
        return Response(status=206, body=self._multipart(node, ranges, parts, closing),
                        content_type=f"multipart/byteranges; boundary={boundary}",
                        headers=[*out, ("content-length", str(length + len(closing)))])

    def _stream(self, status: int, ranges: list[tuple[int, int]], node: Node, ctype: str,
                headers: list[tuple[str, str]]) -> Response:
        start, end = ranges[0]
        body: bytes | AsyncIterator[bytes | memoryview] = node.block if node.unixfs is None else \
            file_bytes(self.blocks, node, start, end)
        if isinstance(body, bytes):
            body = body[start:end]
        return Response(status=status, body=body, content_type=ctype, headers=headers)

    async def _multipart(self, node: Node, ranges: list[tuple[int, int]], parts: list[bytes],
                         closing: bytes) -> AsyncIterator[bytes | memoryview]:
        for part, (start, end) in zip(parts, ranges, strict=True):
            yield part
            async for chunk in file_bytes(self.blocks, node, start, end):
                yield chunk
            yield b"\r\n"
        yield closing

    async def _dir(self, request: Request, resolved: Resolved,
                   headers: list[tuple[str, str]]) -> Response:
        try:
            index = await resolve_path(self.blocks, resolved.cid, ["index.html"])
        except PathNotFoundError:
            index = None
        if index is not None and index.is_file and index.node is not None:
            return await self._file(request, index.node, "index.html", headers)
        etag = f'"DirIndex-{LISTING_VERSION}_CID-{_cid_text(resolved.cid)}"'
        if etag_matches(request.header("if-none-match"), etag):
            return _not_modified(etag, headers)
        return Response(body=self._listing(request.path, resolved.cid),
                        content_type="text/html; charset=utf-8",
                        headers=[*headers, ("etag", etag)])

    async def _listing(self, path: str, cid: CID) -> AsyncIterator[bytes]:
        title = html.escape(unquote(path))
        buf = bytearray(
            f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title>"
            "<style>body{font-family:sans-serif}td{padding:2px 12px}"
            ".cid{font-family:monospace;color:#666}</style></head><body>"
            f"<h1>Index of {title}</h1><p class=\"cid\">{cid}</p><table>"
            "<tr><th>Name</th><th>Size</th><th>CID</th></tr>".encode())
        if path.rstrip("/").count("/") > 2:
            buf += b'<tr><td><a href="../">..</a></td><td></td><td></td></tr>'
        async for entry in ls(self.blocks, cid):
            name = html.escape(entry.name)
            buf += (f'<tr><td><a href="{html.escape(quote(entry.name))}">{name}</a></td>'
                    f"<td>{_size(entry.tsize)}</td>"
                    f'<td class="cid">{entry.cid_text}</td></tr>').encode()
            if len(buf) >= 64 * 1024:
                yield bytes(buf)
                buf.clear()
        buf += b"</table></body></html>\n"
        yield bytes(buf)


#: Small answers kept by Gateway.handle: bodies up to ANSWER_MAX_BODY, ANSWER_CACHE_BYTES in all.
ANSWER_MAX_BODY = 64 * 1024
ANSWER_CACHE_BYTES = 16 << 20


@dataclass(frozen=True, slots=True)
class _Answer:
    cid: CID  # while this block is local, the answer stands
    body: bytes
    content_type: str
    headers: list[tuple[str, str]]
    etag: str
    size: int  # counted against ANSWER_CACHE_BYTES: key, body and headers


ANSWER_MAX_KEY = 1024


def _answer_key(request: Request) -> tuple[str, ...] | None:
    """What the answer depends on (the path, the negotiated format and the arguments that
    change it), never the raw Accept or junk query arguments, so that a flood of distinct
    requests cannot fill the memory; None (not kept) when the key is over ANSWER_MAX_KEY."""
    format_arg = request.arg("format")
    fmt = response_format(format_arg, request.header("accept"))
    key = (request.path, fmt or "", "arg" if format_arg else "accept",
           *(f"{name}={request.arg(name) or ''}"
             for name in ("filename", "download", "dag-scope", "entity-bytes")),
           # an Accept-negotiated answer's Content-Location carries the whole query
           request_query(request) if fmt is not None and not format_arg else "")
    return key if sum(len(part) for part in key) <= ANSWER_MAX_KEY else None


def _answer_size(key: tuple[str, ...], body: bytes, headers: list[tuple[str, str]]) -> int:
    return 256 + len(body) + sum(len(part) for part in key) \
        + sum(64 + len(k) + len(v) for k, v in headers)


class _Blocks:
    """The gateway's block getter: the wrapped one's ``get``, and its ``prefetch`` (blocks
    from peers) and ``read_soon`` (local reads started ahead, dagwalk.READ_AHEAD) if it has
    them."""

    def __init__(self, blocks: BlockGetter, is_local: Callable[[CID], bool]) -> None:
        self._blocks = blocks
        self.is_local = is_local
        for name in ("prefetch", "read_soon"):
            method = getattr(blocks, name, None)
            if method is not None:
                setattr(self, name, method)

    async def get(self, cid: CidLike) -> bytes:
        return await self._blocks.get(cid)


def _cid_text(cid: CID) -> str:
    """As str(cid) prints it (v0 base58btc, v1 base32), without multiformats' slow encoder."""
    return cid_text(cid_bytes(cid))


def _not_modified(etag: str, headers: list[tuple[str, str]]) -> Response:
    return Response(status=304, body=b"", content_type="text/plain",
                    headers=[*headers, ("etag", etag)])


def request_query(request: Request) -> str:
    """The query string again (``?a=b&c=d``), or ""."""
    items = [f"{quote(k)}={quote(v)}" for k, values in request.query.items() for v in values]
    return "?" + "&".join(items) if items else ""


def _with_format(request: Request, fmt: str) -> str:
    query = request_query(request)
    return f"{request.path}{query}{'&' if query else '?'}format={fmt}"


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")
