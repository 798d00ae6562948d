"""Local pin routes, shaped like Kubo's: ``pin/add`` (fetching what is missing, several CIDs,
``progress`` streamed as Kubo's ``AddPinOutput``: ``{"Progress": nodes, "Bytes": bytes}`` every
0.5 s, zero fields left out, the last count, then ``{"Pins": [...]}``), ``pin/rm``, ``pin/ls``
(``type``, ``quiet``, ``names``, ``name`` filtering; streamed), ``pin/update`` (``progress``
as for add) and ``pin/verify`` (Kubo's ``PinVerifyRes``: ``{"Cid", "Ok", "BadNodes"}``; every
pin)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from ...errors import ApiError, IpfsKitError, StoreError
from ...storage.blocks import to_cid
from ...storage.pinfetch import (
    DEFAULT_TIMEOUT,
    BlockFetcher,
    Progress,
    pin_fetching,
    stream_job,
    update_fetching,
)
from ...storage.service import StoreService
from ...storage.store import TieredStore
from ..router import Request, Response, Router

PIN_TYPES = ("all", "recursive", "direct", "indirect")
MAX_TIMEOUT = 24 * 3600


def register_local_pin_routes(router: Router, blocks: StoreService,
                              fetcher: BlockFetcher | None) -> None:
    LocalPinRoutes(blocks, fetcher).register(router)


def _line(obj: Any) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def _error_line(exc: BaseException) -> bytes:
    return _line({"Message": str(exc), "Code": 0, "Type": "error"})


MAX_PIN_NAME = 255  # bytes, Kubo's MaxPinNameBytes


def _pin_name(request: Request) -> str:
    name = request.arg("name", "") or ""
    if len(name.encode()) > MAX_PIN_NAME:
        raise StoreError(f"pin name is {len(name.encode())} bytes (max {MAX_PIN_NAME} bytes)")
    return name


def _progress(state: Progress) -> dict[str, int]:
    """Kubo's AddPinOutput progress: Go's omitempty drops a zero field."""
    return {k: v for k, v in (("Progress", state.blocks), ("Bytes", state.bytes)) if v}


async def _streamed(store: TieredStore, job: Any, result: Any) -> AsyncIterator[bytes]:
    async for item in stream_job(store, job):
        if isinstance(item, Progress):
            yield _line(_progress(item))
        elif item is None:
            yield _line(result())
        else:
            yield _error_line(item)


class LocalPinRoutes:
    def __init__(self, blocks: StoreService, fetcher: BlockFetcher | None) -> None:
        self._blocks = blocks
        self._fetcher = fetcher

    @property
    def store(self) -> TieredStore:
        return self._blocks.store

    def register(self, router: Router) -> None:
        for path, handler in {"pin/add": self._add, "pin/rm": self._rm, "pin/ls": self._ls,
                              "pin/update": self._update, "pin/verify": self._verify}.items():
            router.add("POST", f"/api/v0/{path}", handler)

    def _timeout(self, request: Request) -> float:
        return float(request.int("timeout", int(DEFAULT_TIMEOUT), minimum=1,
                                 maximum=MAX_TIMEOUT))

    async def _add(self, request: Request) -> Response:
        cids = [to_cid(text) for text in request.query.get("arg", [])]
        if not cids:
            raise ApiError("argument 'arg' is required", status=400)
        recursive = request.arg("recursive", "true") != "false"
        name = _pin_name(request)
        timeout = self._timeout(request)
        store = self.store
        for cid in cids if not recursive else ():
            pin = store.pin_of(cid)
            if pin is not None and pin.mode == "recursive":  # Kubo's doPinDirect
                raise StoreError(f"{cid} already pinned recursively")

        async def job(progress: Any) -> None:
            for cid in cids:
                await pin_fetching(store, self._fetcher, cid, recursive=recursive, name=name,
                                   timeout=timeout, progress=progress)

        pins = {"Pins": [str(c) for c in cids]}
        if not request.flag("progress"):
            await job(None)
            return Response.json(pins)

        return Response(body=_streamed(store, job, lambda: pins),
                        content_type="application/x-ndjson")

    async def _rm(self, request: Request) -> Response:
        cids = [to_cid(text) for text in request.query.get("arg", [])]
        if not cids:
            raise ApiError("argument 'arg' is required", status=400)
        recursive = request.arg("recursive", "true") != "false"
        for cid in cids:
            await self.store.unpin(cid, recursive=recursive)
        return Response.json({"Pins": [str(c) for c in cids]})

    async def _update(self, request: Request) -> Response:
        args = request.query.get("arg", [])
        if len(args) != 2:
            raise ApiError("pin update takes two arguments: OLD and NEW", status=400)
        old, new = to_cid(args[0]), to_cid(args[1])
        unpin, timeout = request.arg("unpin", "true") != "false", self._timeout(request)
        done = Progress()

        async def job(progress: Any) -> None:
            nonlocal done
            done = await update_fetching(self.store, self._fetcher, old, new, unpin=unpin,
                                         timeout=timeout, progress=progress)

        def result() -> dict[str, Any]:  # Kubo's PinOutput, and what had to be fetched
            return {"Pins": [str(old), str(new)], "Fetched": done.fetched,
                    "FetchedBytes": done.fetched_bytes}

        if not request.flag("progress"):
            await job(None)
            return Response.json(result())
        return Response(body=_streamed(self.store, job, result),
                        content_type="application/x-ndjson")

    async def _ls(self, request: Request) -> Response:
        kind = request.arg("type", "all") or "all"
        if kind not in PIN_TYPES:
            raise ApiError(f"invalid type '{kind}', must be one of {{direct, indirect, "
                           "recursive, all}", status=400)
        quiet, names, stream = (request.flag("quiet"), request.flag("names"),
                                request.flag("stream"))
        wanted = _pin_name(request)  # Kubo: names containing it (implies names)
        names = names or bool(wanted)
        store = self.store

        def entry(cid: str, mode: str, name: str = "") -> dict[str, Any]:
            out: dict[str, Any] = {"Cid": cid}
            if not quiet:
                out["Type"] = mode
            if names:
                out["Name"] = name
            return out

        args = request.query.get("arg", [])
        if args:  # one map even with stream (Kubo streams lines; its clients read both)
            keys: dict[str, Any] = {}
            for text in args:
                cid = to_cid(text)
                status = await store.pin_status(cid, kind)
                if status is None:
                    raise StoreError(f"path '{text}' is not pinned")
                keys[str(cid)] = entry(str(cid), *status)
            return Response.json({"Keys": {k: {x: y for x, y in v.items() if x != "Cid"}
                                           for k, v in keys.items()}})

        async def entries() -> AsyncIterator[dict[str, Any]]:
            if kind in ("all", "recursive", "direct"):
                async for pin in store.iter_pins():
                    if kind in ("all", pin.mode) and wanted in pin.name:
                        yield entry(pin.cid, pin.mode, pin.name)
            if kind in ("all", "indirect") and not wanted:  # indirect ones have no name
                async for cid in store.iter_indirect():
                    yield entry(cid, "indirect")

        if stream:  # Kubo's --stream: one object a line, as they are found
            async def body() -> AsyncIterator[bytes]:
                async for item in entries():
                    yield _line(item)
            return Response(body=body(), content_type="application/x-ndjson")
        keys = {}
        async for item in entries():
            keys[item.pop("Cid")] = item
        return Response.json({"Keys": keys})

    async def _verify(self, request: Request) -> Response:
        verbose, quiet = request.flag("verbose"), request.flag("quiet")
        if verbose and quiet:
            raise ApiError("the --verbose and --quiet options can not be used at the same "
                           "time", status=400)
        store = self.store

        async def body() -> AsyncIterator[bytes]:
            async for pin in store.iter_pins():  # direct pins too (Kubo: recursive only)
                try:
                    bad = await store.verify_pin(pin.cid)
                except IpfsKitError as exc:
                    bad = [(pin.cid, str(exc))]
                if not bad and not verbose:
                    continue
                # PinVerifyRes embeds PinStatus (flattened), omitempty: Ok only when true.
                doc: dict[str, Any] = {"Cid": pin.cid}
                if not bad:
                    doc["Ok"] = True
                elif not quiet:
                    doc["BadNodes"] = [{"Cid": c, "Err": e} for c, e in bad]
                yield _line(doc)
        return Response(body=body(), content_type="application/x-ndjson")
