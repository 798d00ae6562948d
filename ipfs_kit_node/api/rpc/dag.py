"""Kubo's ``dag/get|put|stat|resolve`` over dag-pb, raw, DAG-CBOR and DAG-JSON.

Values move between codecs through one data model: dicts, lists, str, int, float, bool, None,
``bytes`` and ``Link`` (a binary CID; codecs/cborlinks keeps the two apart where libipld
cannot, since it hands both back as bytes). The DAG-CBOR and DAG-JSON encoders here write the
canonical forms (DAG-CBOR map keys length-first, DAG-JSON keys by bytes), so a value put
through either gets the CID Kubo gives it.
"""

from __future__ import annotations

import base64
import json
import math
import struct
from typing import Any

from multiformats import CID, multihash

from ...cid import cid_from_bytes, to_cid
from ...codecs import cborlinks, dagpb
from ...codecs.cborlinks import Link
from ...dagwalk import child_links, get_block, is_identity
from ...errors import ApiError, CodecError
from ...storage.service import StoreService
from ...unixfs.exporter import BlockGetter, Pacer
from ..router import Request, Response, Router
from .multipart import body_data
from .paths import resolve_arg

CODECS = {"dag-pb": 0x70, "raw": 0x55, "dag-cbor": 0x71, "dag-json": 0x0129}
MAX_NESTING = cborlinks.MAX_NESTING
#: Blocks dag/stat visits before it gives up (a DAG bigger than this is a repo-wide walk).
MAX_STAT_BLOCKS = 10_000_000


# -- the data model ----------------------------------------------------------------------------


def decode(cid: CID, data: bytes) -> Any:
    code = cid.codec.code
    if code == CODECS["dag-cbor"]:
        return cborlinks.decode(data, cid)
    if code == CODECS["dag-json"]:
        return json_to_value(data, str(cid))
    if code == CODECS["raw"]:
        return data
    if code == CODECS["dag-pb"]:
        node = dagpb.decode(data, str(cid))
        out: dict[str, Any] = {"Links": [
            {"Hash": Link(bytes(link.cid) if isinstance(link.cid, CID) else link.cid),
             "Name": link.name or "", "Tsize": link.tsize or 0} for link in node.links]}
        if node.data is not None:
            out["Data"] = node.data
        return out
    raise ApiError(f"{cid}: codec {cid.codec.name} is not supported (dag-pb, raw, dag-cbor, "
                   "dag-json)", 400)


def encode(value: Any, codec: str) -> bytes:
    if codec == "dag-cbor":
        out = bytearray()
        _cbor(value, out, 0)
        return bytes(out)
    if codec == "dag-json":
        return value_to_json(value)
    if codec == "raw":
        if not isinstance(value, bytes) or isinstance(value, Link):
            raise ApiError("only bytes can be stored as raw", 400)
        return bytes(value)
    if codec == "dag-pb":
        return _dagpb_encode(value)
    raise ApiError(f"unknown codec {codec!r} (dag-pb, raw, dag-cbor, dag-json)", 400)


def _dagpb_encode(value: Any) -> bytes:
    if not isinstance(value, dict) or set(value) - {"Data", "Links"}:
        raise ApiError("a dag-pb node is {\"Data\": bytes, \"Links\": [...]}", 400)
    links = []
    for link in value.get("Links") or []:
        if not isinstance(link, dict) or not isinstance(link.get("Hash"), Link):
            raise ApiError("each dag-pb link needs a Hash link", 400)
        links.append(dagpb.PBLink(bytes(link["Hash"]), link.get("Name"), link.get("Tsize")))
    data = value.get("Data")
    if data is not None and not isinstance(data, bytes):
        raise ApiError("dag-pb Data must be bytes", 400)
    return dagpb.encode(links, data)


def _cbor_head(major: int, n: int, out: bytearray) -> None:
    if n < 24:
        out.append(major << 5 | n)
    elif n < 1 << 8:
        out += bytes((major << 5 | 24, n))
    elif n < 1 << 16:
        out.append(major << 5 | 25)
        out += n.to_bytes(2, "big")
    elif n < 1 << 32:
        out.append(major << 5 | 26)
        out += n.to_bytes(4, "big")
    else:
        out.append(major << 5 | 27)
        out += n.to_bytes(8, "big")


def _cbor(value: Any, out: bytearray, depth: int) -> None:
    if depth > MAX_NESTING:
        raise ApiError(f"value nested over {MAX_NESTING} levels", 400)
    if value is None:
        out.append(0xF6)
    elif value is True:
        out.append(0xF5)
    elif value is False:
        out.append(0xF4)
    elif isinstance(value, int):
        if not -(1 << 64) <= value < 1 << 64:
            raise ApiError("integer out of DAG-CBOR's 64-bit range", 400)
        if value >= 0:
            _cbor_head(0, value, out)
        else:
            _cbor_head(1, -1 - value, out)
    elif isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise ApiError("DAG-CBOR has no NaN or infinity", 400)
        out.append(0xFB)
        out += struct.pack(">d", value)
    elif isinstance(value, Link):
        out += b"\xd8\x2a"
        _cbor_head(2, len(value) + 1, out)
        out += b"\x00" + value
    elif isinstance(value, bytes):
        _cbor_head(2, len(value), out)
        out += value
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        _cbor_head(3, len(raw), out)
        out += raw
    elif isinstance(value, list):
        _cbor_head(4, len(value), out)
        for item in value:
            _cbor(item, out, depth + 1)
    elif isinstance(value, dict):
        keys = sorted(((k.encode("utf-8"), k) for k in value), key=lambda p: (len(p[0]), p[0]))
        _cbor_head(5, len(keys), out)
        for raw, key in keys:
            _cbor_head(3, len(raw), out)
            out += raw
            _cbor(value[key], out, depth + 1)
    else:
        raise ApiError(f"cannot encode a {type(value).__name__} in DAG-CBOR", 400)


def json_to_value(data: bytes, where: str = "input") -> Any:
    """DAG-JSON: ``{"/": "cid"}`` is a link, ``{"/": {"bytes": "b64"}}`` bytes."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        raise CodecError(f"malformed DAG-JSON {where}") from None
    return _from_json(doc, 0)


def _from_json(item: Any, depth: int) -> Any:
    if depth > MAX_NESTING:
        raise ApiError(f"value nested over {MAX_NESTING} levels", 400)
    if isinstance(item, dict):
        if set(item) == {"/"}:
            inner = item["/"]
            if isinstance(inner, str):
                try:
                    return Link(bytes(to_cid(inner)))
                except ValueError:
                    raise ApiError(f"malformed link {inner[:100]!r}", 400) from None
            if isinstance(inner, dict) and set(inner) == {"bytes"} and \
                    isinstance(inner["bytes"], str):
                text = inner["bytes"]
                return base64.b64decode(text + "=" * (-len(text) % 4))
        return {k: _from_json(v, depth + 1) for k, v in item.items()}
    if isinstance(item, list):
        return [_from_json(v, depth + 1) for v in item]
    return item


def _to_json(value: Any, depth: int = 0) -> Any:
    if depth > MAX_NESTING:
        raise ApiError(f"value nested over {MAX_NESTING} levels", 400)
    if isinstance(value, Link):
        return {"/": str(cid_from_bytes(bytes(value)))}
    if isinstance(value, bytes):
        return {"/": {"bytes": base64.b64encode(value).decode().rstrip("=")}}
    if isinstance(value, dict):
        return {k: _to_json(value[k], depth + 1)
                for k in sorted(value, key=lambda k: k.encode("utf-8"))}
    if isinstance(value, list):
        return [_to_json(v, depth + 1) for v in value]
    return value


def value_to_json(value: Any) -> bytes:
    return json.dumps(_to_json(value), separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


# -- routes ------------------------------------------------------------------------------------


def _codec(request: Request, name: str, default: str) -> str:
    value = (request.arg(name) or default).lower()
    aliases = {"cbor": "dag-cbor", "json": "dag-json", "protobuf": "dag-pb"}
    value = aliases.get(value, value)
    if value not in CODECS:
        raise ApiError(f"{name} must be one of {', '.join(CODECS)}, got {value[:40]!r}", 400)
    return value


def register_dag_routes(router: Router, store: StoreService, blocks: BlockGetter) -> None:
    async def put(request: Request) -> Response:
        store_codec = _codec(request, "store-codec", "dag-cbor")
        input_codec = _codec(request, "input-codec", "dag-json")
        hashfun = request.arg("hash") or "sha2-256"
        data = body_data(request.body, request.header("content-type"))
        probe = CID("base32", 1, input_codec, multihash.digest(b"", "identity"))
        value = decode(probe, data)  # every input is checked, even stored as is
        block = data if store_codec == input_codec else encode(value, store_codec)
        try:
            cid = CID("base32", 1, store_codec, multihash.digest(block, hashfun))
        except Exception as exc:
            raise ApiError(f"cannot hash with {hashfun!r}: {exc}", 400) from None
        await store.store.put(cid, block)
        if request.flag("pin"):
            await store.store.pin(cid, recursive=True)
        return Response.json({"Cid": {"/": str(cid)}})

    async def get(request: Request) -> Response:
        resolved = await resolve_arg(blocks, request.require())
        out_codec = _codec(request, "output-codec", "dag-json")
        data = resolved.block
        if resolved.cid.codec.name == out_codec:
            return Response(body=data, content_type="application/octet-stream" if out_codec
                            in ("raw", "dag-pb", "dag-cbor") else "application/json")
        value = decode(resolved.cid, data)
        return Response(body=encode(value, out_codec) + (b"\n" if out_codec == "dag-json"
                                                          else b""),
                        content_type="application/json" if out_codec == "dag-json"
                        else "application/octet-stream")

    async def resolve(request: Request) -> Response:
        resolved = await resolve_arg(blocks, request.require())
        return Response.json({"Cid": {"/": str(resolved.cid)}, "RemPath": ""})

    async def stat(request: Request) -> Response:
        """Blocks and bytes of a whole DAG (Kubo's dag stat), each block counted once."""
        roots = request.query.get("arg") or []
        if not roots:
            raise ApiError("argument 'arg' is required", 400)
        seen: set[bytes] = set()
        total_size = 0
        stats: list[dict[str, Any]] = []
        pacer = Pacer()
        for text in roots:
            root = (await resolve_arg(blocks, text)).cid
            size = count = 0
            stack = [bytes(root)]
            mine: set[bytes] = set()
            while stack:
                raw = stack.pop()
                if raw in mine:
                    continue
                mine.add(raw)
                if len(mine) > MAX_STAT_BLOCKS:
                    raise ApiError(f"DAG over {MAX_STAT_BLOCKS} blocks", 500)
                cid = cid_from_bytes(raw)
                data = await get_block(blocks, cid)
                await pacer()
                if not is_identity(cid):
                    size += len(data)
                    count += 1
                    if raw not in seen:
                        seen.add(raw)
                        total_size += len(data)
                stack.extend(reversed(child_links(cid, data)))
            stats.append({"Cid": {"/": str(root)}, "Size": size, "NumBlocks": count})
        return Response.json({"UniqueBlocks": len(seen), "TotalSize": total_size,
                              "Ratio": round(sum(s["Size"] for s in stats) / total_size, 6)
                              if total_size else 0, "DagStats": stats})

    router.add("POST", "/api/v0/dag/put", put)
    router.add("POST", "/api/v0/dag/get", get)
    router.add("POST", "/api/v0/dag/resolve", resolve)
    router.add("POST", "/api/v0/dag/stat", stat)
