"""repo and block routes over the node's block store (local pins: localpins.py)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator
from pathlib import Path

import trio
from multiformats import CID, multihash

from ...cid import cid_from_bytes, cid_text
from ...errors import ApiError, BlockNotFoundError
from ...storage.frames import FrameDecoder
from ...storage.service import StoreService
from ...storage.store import TieredStore
from ...storage.writer import block_writer
from ..router import Request, Response, Router
from ..rpc.multipart import body_data

#: A CIDv1 raw's prefix: Kubo names a removed block by its multihash as a raw block.
_RAW_V1 = b"\x01\x55"
#: block/put's older ``format`` names (Kubo still takes them).
_FORMATS = {"v0": "dag-pb", "protobuf": "dag-pb", "cbor": "dag-cbor", "json": "dag-json"}


def register_block_routes(router: Router, blocks: StoreService, repo: Path) -> None:
    BlockRoutes(blocks, repo).register(router)


class BlockRoutes:
    def __init__(self, blocks: StoreService, repo: Path) -> None:
        self._blocks = blocks
        self._repo = repo

    @property
    def store(self) -> TieredStore:
        return self._blocks.store

    def register(self, router: Router) -> None:
        routes = {
            "repo/stat": self._repo_stat, "repo/gc": self._repo_gc,
            "repo/verify": self._repo_verify, "block/put": self._block_put,
            "block/get": self._block_get, "block/stat": self._block_stat,
            "block/rm": self._block_rm,
        }
        for path, handler in routes.items():
            router.add("POST", f"/api/v0/{path}", handler)
        router.add("POST", "/api/v0/block/put-many", self._block_put_many, streaming=True)

    async def _repo_stat(self, request: Request) -> Response:
        stats = self.store.stats()
        return Response.json({
            "RepoSize": stats.disk.bytes, "StorageMax": stats.max_size,
            "NumObjects": stats.disk.blocks, "RepoPath": str(self._repo),
            "Tiers": stats.as_dict(),
        })

    async def _repo_gc(self, request: Request) -> Response:
        """Our API: GC down to the watermark (``full``: every unpinned block) and a summary.
        Kubo's RPC listener answers as Kubo does: every unpinned block goes (pinned ones stay
        local, remote tier or not) and each removed block is a line ``{"Key":{"/":CID}}``
        (CIDv1 raw of its multihash, as Kubo's flatfs keys print), the form kubo-rpc-client's
        and aioipfs' ``repo.gc`` read."""
        if request.kubo:
            return Response(body=self._kubo_gc(silent=request.flag("silent")),
                            content_type="application/json",
                            headers=[("x-chunked-output", "1")])
        result = await self.store.gc(full=request.flag("full"))
        return Response.json({"Removed": result.removed, "Freed": result.freed,
                              "EvictedToRemote": result.evicted_to_remote,
                              "Remaining": result.remaining,
                              "PacksRemoved": result.packs_removed,
                              "PacksReclaimed": result.reclaimed})

    async def _kubo_gc(self, *, silent: bool) -> AsyncIterator[bytes]:
        """Kubo's repo/gc lines as the GC removes each slice, as Kubo streams them (answered
        at the end, a GC of a million blocks left its client waiting in silence for
        minutes). The GC runs in the store's background nursery: a client that leaves does
        not stop it half-way. ``silent`` (Kubo's --silent): no lines."""
        nursery = self.store.background
        if nursery is None:  # a store not running its jobs (tests): collected, then printed
            removed: list[list[bytes]] = []
            await self.store.gc(full=True, evict=False, removed=removed.append)
            async for chunk in _gc_lines([] if silent else removed):
                yield chunk
            return
        send, receive = trio.open_memory_channel[list[bytes]](math.inf)
        failure: list[Exception] = []

        def offer(keys: list[bytes]) -> None:
            with contextlib.suppress(trio.BrokenResourceError):  # the client left
                send.send_nowait(keys)

        async def collect() -> None:
            try:
                await self.store.gc(full=True, evict=False, removed=offer)
            except Exception as exc:  # raised to the answer (its trailer), logged by it
                failure.append(exc)
            finally:
                send.close()

        nursery.start_soon(collect)
        with receive:
            async for keys in receive:
                if not silent:
                    async for chunk in _gc_lines([keys]):
                        yield chunk
        if failure:
            raise failure[0]

    async def _repo_verify(self, request: Request) -> Response:
        result = await self.store.verify()
        return Response.json({"Checked": result.checked, "Corrupt": result.corrupt,
                              "Missing": result.missing, "Ok": result.ok})

    async def _block_put(self, request: Request) -> Response:
        """Kubo's block/put: the block as a multipart file (Kubo's clients) or the body (our
        CLI); ``cid-codec`` (default raw), ``mhtype``, and the older ``format`` (v0: a
        CIDv0 dag-pb block, as Kubo still accepts)."""
        data = body_data(request.body, request.header("content-type"))
        fmt = request.arg("format") or ""
        codec = request.arg("cid-codec") or _FORMATS.get(fmt, fmt) or "raw"
        hashfun = request.arg("mhtype", "sha2-256") or "sha2-256"
        try:
            digest = multihash.digest(data, hashfun)
            cid = CID("base58btc", 0, "dag-pb", digest) if fmt == "v0" \
                else CID("base32", 1, codec, digest)
        except Exception as exc:
            raise ApiError(f"cannot make a CID with codec {codec} and hash {hashfun}: {exc}",
                           400) from None
        await self.store.put(cid, data)
        if request.flag("pin"):
            await self.store.pin(cid, recursive=False)
        return Response.json({"Key": str(cid), "Size": len(data)})

    async def _block_put_many(self, request: Request) -> Response:
        """Frames of (CID, bytes), each verified once (the client hashed them; we check) and
        stored while the next ones arrive: batches group-commit their fsyncs and index rows
        (storage/writer.py), and the answer comes once every block is durable. ``pin-last``
        pins the last block recursively (an importer sends the root last)."""
        assert request.chunks is not None
        decoder = FrameDecoder()
        stored = 0
        last: bytes | None = None
        pin = request.flag("pin-last")
        with self.store.hold():  # a GC meanwhile spares them until pinned
            async with block_writer(self.store, links=pin) as writer:
                async for chunk in request.chunks:
                    for cid_bytes, data in decoder.feed(chunk):
                        await writer.add(cid_from_bytes(cid_bytes), data)
                        last = cid_bytes
                        stored += 1
                decoder.close()
            if pin and last is not None:
                await self.store.pin(cid_from_bytes(last), recursive=True,
                                     links=writer.links)
        return Response.json({"Blocks": stored, "New": writer.new,
                              "Last": cid_text(last) if last else None})

    async def _block_get(self, request: Request) -> Response:
        data = await self.store.get(request.cid())
        return Response(body=data, content_type="application/octet-stream")

    async def _block_stat(self, request: Request) -> Response:
        cid = request.cid()
        return Response.json({"Key": str(cid), "Size": await self.store.size(cid)})

    async def _block_rm(self, request: Request) -> Response:
        cid = request.cid()
        if not await self.store.delete(cid):
            raise BlockNotFoundError(str(cid))
        return Response.json({"Hash": str(cid)})


async def _gc_lines(slices: list[list[bytes]]) -> AsyncIterator[bytes]:
    """Kubo's repo/gc lines, about 64 KiB a chunk; a slice is dropped once printed."""
    out: list[str] = []
    size = 0
    while slices:
        for key in slices.pop(0):
            line = f'{{"Key":{{"/":"{cid_text(_RAW_V1 + key)}"}}}}\n'
            out.append(line)
            size += len(line)
            if size >= 64 * 1024:
                yield "".join(out).encode()
                out, size = [], 0
    if out:
        yield "".join(out).encode()
