"""``dag/export`` and ``dag/import``: CAR archives in and out, as Kubo's RPC has them.

Export streams a CARv1 of a whole DAG (depth-first, each block once), reading through Bitswap
so blocks held by peers come along. Import reads CARv1 or CARv2 as the body arrives (Kubo's
clients send it as a multipart file, our CLI as the body itself), stores each block once the
reader has checked it against its CID, and pins the roots (recursively) unless
``pin-roots=false``; a root it cannot pin is reported in ``PinErrorMsg`` as Kubo does.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from multiformats import CID

from ...codecs import car
from ...codecs.car import CarBlock, CarError, CarHeader, CarReader
from ...dagwalk import car_blocks, is_identity, resolve_path
from ...errors import CarImportError, IpfsKitError
from ...storage.service import StoreService
from ...unixfs.exporter import BlockGetter
from ..router import Request, Response, Router
from ..rpc.multipart import PartData, PartHeaders, boundary_of, events

#: Bytes of CAR gathered into one chunk of the export's body.
_CHUNK = 256 * 1024


def register_car_routes(router: Router, blocks: BlockGetter, store: StoreService) -> None:
    async def export(request: Request) -> Response:
        """The CID's whole DAG (``arg`` may be a CID or an /ipfs/ path)."""
        root, segments = _split(request.require())
        resolved = await resolve_path(blocks, root, segments)  # errors here get a status

        async def body() -> AsyncIterator[bytes]:
            yield car.encode_header([resolved.cid])
            batch = bytearray()
            async for cid, data in car_blocks(blocks, resolved, "all"):
                batch += car.encode_block(cid, data)
                if len(batch) >= _CHUNK:
                    yield bytes(batch)
                    batch.clear()
            if batch:
                yield bytes(batch)

        return Response(body=body(), content_type="application/vnd.ipld.car")

    async def import_(request: Request) -> Response:
        # A GC meanwhile spares the blocks this import stores or finds until its roots are
        # pinned (their DAG may be complete only once the last block arrives).
        with store.store.hold():
            return await _import(request)

    async def _import(request: Request) -> Response:
        assert request.chunks is not None
        pin_roots = (request.arg("pin-roots") or "true").lower() != "false"
        content_type = request.header("content-type")
        if content_type and content_type.lower().startswith("multipart/"):
            archives = _multipart_archives(request.chunks, boundary_of(content_type))
        else:
            archives = _one_archive(request.chunks)
        roots: dict[str, CID] = {}
        count = size = 0
        async for archive in archives:
            reader = CarReader()
            try:
                async for chunk in archive:
                    batch: list[tuple[CID, bytes]] = []
                    for event in reader.feed(chunk):
                        if isinstance(event, CarHeader):
                            roots.update((str(r), r) for r in event.roots)
                        elif isinstance(event, CarBlock) and not is_identity(event.cid):
                            batch.append((event.cid, event.data))
                            count += 1
                            size += len(event.data)
                    # one group of fsyncs and one index commit per body chunk's blocks
                    await store.store.put_many(batch, hashed=True)
                reader.close()
            except CarError as exc:
                raise CarImportError(f"dag import: {exc} ({count} blocks stored before it; "
                                     "nothing pinned)") from None
        lines: list[dict[str, Any]] = []
        for text, cid in roots.items():
            message = ""
            if pin_roots:
                try:
                    await store.store.pin(cid, recursive=True)
                except IpfsKitError as exc:
                    message = str(exc)
                lines.append({"Root": {"Cid": {"/": text}, "PinErrorMsg": message}})
        if request.flag("stats"):
            lines.append({"Stats": {"BlockCount": count, "BlockBytesCount": size}})
        if request.flag("silent"):
            lines = []
        return Response(body=b"".join(json.dumps(line).encode() + b"\n" for line in lines),
                        content_type="application/json", headers=[("x-chunked-output", "1")])

    router.add("POST", "/api/v0/dag/export", export)
    router.add("POST", "/api/v0/dag/import", import_, streaming=True)


def _split(arg: str) -> tuple[str, list[str]]:
    """``CID``, ``CID/a/b`` or ``/ipfs/CID/a/b`` as (CID, path segments)."""
    parts = [p for p in arg.removeprefix("/ipfs/").split("/") if p]
    if not parts:
        raise CarImportError(f"not a CID or /ipfs/ path: {arg[:100]!r}")
    return parts[0], parts[1:]


async def _one_archive(chunks: AsyncIterator[bytes]) -> AsyncIterator[AsyncIterator[bytes]]:
    yield chunks


async def _multipart_archives(chunks: AsyncIterator[bytes], boundary: bytes
                              ) -> AsyncIterator[AsyncIterator[bytes]]:
    """Each file part of the body as a stream of its bytes (Kubo takes several CARs)."""
    parts = events(chunks, boundary)
    pending: list[Any] = []

    async def part_bytes() -> AsyncIterator[bytes]:
        while True:
            event = pending.pop() if pending else await anext(parts, None)
            if event is None:
                return
            if isinstance(event, PartHeaders):
                pending.append(event)
                return
            if isinstance(event, PartData):
                yield event.data

    while True:
        event = pending.pop() if pending else await anext(parts, None)
        if event is None:
            return
        if isinstance(event, PartHeaders):
            stream = part_bytes()
            yield stream
            async for _ in stream:  # whatever the reader left unread
                pass
