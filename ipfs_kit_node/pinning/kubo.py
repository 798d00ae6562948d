"""A Kubo RPC client (``/api/v0``, POST only), on httpx and trio.

Also accepts js-ipfs 0.66's answers where they differ from Kubo's: ``add`` sizes as numbers
(Kubo: strings), ``pin/ls`` as one ``{"Keys": {...}}`` map when it does not stream, and a
``pin/add`` without progress lines. Errors come back as ``{"Message", "Code", "Type"}`` bodies,
or mid-stream in the ``X-Stream-Error`` trailer; both become our exceptions.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from ..cid import to_cid
from ..errors import PinningError, RemoteProtocolError
from .base import HttpService

ADD_TIMEOUT = 600.0
PIN_TIMEOUT = 600.0


def canonical(cid: str) -> str:
    """CIDv1 in base32 and v0 in base58, as Kubo prints them (js-ipfs prints v1 in base58)."""
    try:
        return str(to_cid(cid))
    except Exception:
        raise RemoteProtocolError(f"the service answered with a malformed CID {cid!r}"
                                  ) from None


@dataclass(frozen=True)
class Added:
    name: str
    cid: str
    size: int


class KuboClient(HttpService):
    service = "Kubo"

    async def _call(self, command: str, params: Any = None, **kw: Any) -> Any:
        return await self.json("POST", f"/api/v0/{command}", params=params, **kw)

    async def id(self) -> dict[str, Any]:
        doc = await self._call("id")
        self.expect(doc, "ID", "id")
        return dict(doc)

    async def version(self) -> str:
        return str(self.expect(await self._call("version"), "Version", "version"))

    async def add(self, chunks: AsyncIterator[bytes] | bytes, name: str = "file", *,
                  pin: bool = True, cid_version: int | None = None,
                  raw_leaves: bool | None = None) -> Added:
        """Stream a file up (multipart); the root's CID, as Kubo computed it."""
        boundary = uuid.uuid4().hex
        params: dict[str, str] = {"pin": str(pin).lower(), "cid-base": "base32"}
        if cid_version is not None:
            params["cid-version"] = str(cid_version)
        if raw_leaves is not None:
            params["raw-leaves"] = str(raw_leaves).lower()

        async def body() -> AsyncIterator[bytes]:
            yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                   f"filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                   ).encode()
            if isinstance(chunks, bytes):
                yield chunks
            else:
                async for chunk in chunks:
                    yield chunk
            yield f"\r\n--{boundary}--\r\n".encode()

        last = None
        async for doc in self.json_lines(
                "POST", "/api/v0/add", params=params, content=body(), timeout=ADD_TIMEOUT,
                headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}):
            if isinstance(doc, dict) and "Hash" in doc:
                last = doc
        if last is None:
            raise RemoteProtocolError(f"Kubo at {self.api} answered add without a Hash")
        return Added(str(last.get("Name", name)), canonical(str(last["Hash"])),
                     int(last.get("Size", 0)))

    async def block_put(self, data: bytes, codec: str = "raw") -> str:
        boundary = uuid.uuid4().hex
        content = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"data\"; "
                   f"filename=\"block\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                   ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
        # cid-codec is Kubo's name; js-ipfs reads format.
        kind = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        doc = await self._call("block/put", {"cid-codec": codec, "format": codec},
                               content=content, headers=kind)
        return canonical(str(self.expect(doc, "Key", "block/put")))

    async def block_get(self, cid: str) -> bytes:
        async with self.request("POST", "/api/v0/block/get", params={"arg": cid}) as response:
            return await response.aread()

    async def cat(self, cid: str) -> AsyncIterator[bytes]:
        """A file's bytes as Kubo reads them (fetching them if it must)."""
        async with self.request("POST", "/api/v0/cat", params={"arg": cid},
                                timeout=ADD_TIMEOUT) as response:
            async for chunk in response.aiter_raw():
                yield chunk
            error = response.extensions.get("trailers", {}).get("x-stream-error")
            if error:
                raise RemoteProtocolError(f"Kubo at {self.api}: cat failed mid-stream: {error}")

    async def pin_add(self, cid: str, *, recursive: bool = True, name: str | None = None,
                      progress: Callable[[int], None] | None = None) -> list[str]:
        """Pins (fetching the DAG if Kubo must); ``progress`` gets the blocks fetched so far."""
        params = {"arg": cid, "recursive": str(recursive).lower(), "progress": "true"}
        if name:
            params["name"] = name
        pins: list[str] | None = None
        async for doc in self.json_lines("POST", "/api/v0/pin/add", params=params,
                                         timeout=PIN_TIMEOUT):
            if not isinstance(doc, dict):
                continue
            if "Pins" in doc:
                pins = [canonical(str(p)) for p in doc["Pins"] or []]
            elif "Progress" in doc and progress is not None:
                progress(int(doc["Progress"]))
        if pins is None:
            raise RemoteProtocolError(f"Kubo at {self.api} answered pin/add without Pins")
        return pins

    async def pin_ls(self, *, type: str = "all", cid: str | None = None
                     ) -> AsyncIterator[tuple[str, str]]:
        """(CID, type) for each pin, streamed where the server streams."""
        params = {"type": type, "stream": "true"}
        if cid is not None:
            params["arg"] = cid
        async for doc in self.json_lines("POST", "/api/v0/pin/ls", params=params):
            if isinstance(doc, dict) and "Cid" in doc:  # streamed, one pin per line
                yield canonical(str(doc["Cid"])), str(doc.get("Type", ""))
            elif isinstance(doc, dict) and isinstance(doc.get("Keys"), dict):  # one map
                for key, value in doc["Keys"].items():
                    yield canonical(str(key)), str((value or {}).get("Type", ""))
            elif doc:
                raise RemoteProtocolError(f"Kubo at {self.api}: unexpected pin/ls line {doc}")

    async def is_pinned(self, cid: str) -> bool:
        try:
            async for _cid, kind in self.pin_ls(type="recursive", cid=cid):
                if kind == "recursive":
                    return True
        except PinningError as exc:  # Kubo answers "not pinned" as an error
            if "not pinned" not in str(exc):
                raise
        return False

    async def pin_rm(self, cid: str, *, recursive: bool = True) -> list[str]:
        doc = await self._call("pin/rm", {"arg": cid, "recursive": str(recursive).lower()})
        return [canonical(str(p)) for p in self.expect(doc, "Pins", "pin/rm") or []]

    async def pin_update(self, old: str, new: str, *, unpin: bool = True) -> list[str]:
        doc = await self._call("pin/update", [("arg", old), ("arg", new),
                                              ("unpin", str(unpin).lower())],
                               timeout=PIN_TIMEOUT)
        return [canonical(str(p)) for p in self.expect(doc, "Pins", "pin/update") or []]

    async def swarm_connect(self, addrs: list[str]) -> list[str]:
        doc = await self._call("swarm/connect", [("arg", a) for a in addrs])
        return [str(s) for s in self.expect(doc, "Strings", "swarm/connect") or []]
