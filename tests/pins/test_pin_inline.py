"""Identity CIDs (`add --inline`) over the RPC, as Kubo: present without being stored, so
`add --pin` pins, `pin add`/`verify`/`ls` and GC agree, and `block/get`, `block/stat` and
`cat` answer from the CID. One real daemon."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import httpx
from helpers import Daemon

MakeDaemon = Callable[..., Daemon]
BOUNDARY = "inlineboundary"


def _form(parts: list[tuple[str, str, bytes]]) -> bytes:
    out = b""
    for name, kind, data in parts:
        out += (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; "
                f"filename=\"{name}\"\r\nContent-Type: {kind}\r\n\r\n").encode() + data + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


def test_inline_add_pins_and_identity_blocks_read(daemon: MakeDaemon) -> None:
    d = daemon(name="a").start()
    rpc = f"{d.rpc_url}/api/v0"
    body = _form([("d", "application/x-directory", b""),
                  ("d%2Fsmall", "application/octet-stream", b"tiny"),
                  ("d%2Fbig", "application/octet-stream", os.urandom(300_000))])
    r = httpx.post(f"{rpc}/add?cid-version=1&inline=true&pin=true", content=body,
                   headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
                   timeout=60)
    assert r.status_code == 200, r.text
    added = {x["Name"]: x["Hash"] for x in map(json.loads, r.text.splitlines())}
    root, tiny = added["d"], added["d/small"]
    assert tiny.startswith("bafkq")  # identity, raw

    def pins(kind: str) -> dict[str, object]:
        out = httpx.post(f"{rpc}/pin/ls?type={kind}", timeout=30)
        assert out.status_code == 200, out.text
        return out.json()["Keys"]  # type: ignore[no-any-return]

    assert set(pins("recursive")) == {root}  # was empty: the pin failed after "success"
    r = httpx.post(f"{rpc}/pin/add?arg={tiny}", timeout=30)
    assert r.status_code == 200 and r.json()["Pins"] == [tiny], r.text
    assert set(pins("recursive")) == {root, tiny}
    r = httpx.post(f"{rpc}/pin/verify", timeout=60)
    assert r.status_code == 200 and "false" not in r.text.lower(), r.text

    assert httpx.post(f"{rpc}/repo/gc", timeout=60).status_code == 200
    r = httpx.post(f"{rpc}/block/get?arg={tiny}", timeout=30)
    assert r.status_code == 200 and r.content == b"tiny", r.text
    r = httpx.post(f"{rpc}/block/stat?arg={tiny}", timeout=30)
    assert r.status_code == 200 and r.json() == {"Key": tiny, "Size": 4}, r.text
    r = httpx.post(f"{rpc}/cat?arg={tiny}", timeout=30)
    assert r.status_code == 200 and r.content == b"tiny", r.text
    r = httpx.post(f"{rpc}/cat?arg={root}/small", timeout=30)
    assert r.status_code == 200 and r.content == b"tiny", r.text

    r = httpx.post(f"{rpc}/pin/rm?arg={tiny}", timeout=30)
    assert r.status_code == 200, r.text
    assert set(pins("recursive")) == {root}
