"""The DAG the identity-CID tests pin: a folder added with `--inline` through a daemon's RPC,
one child small enough to be an identity CID (`bafkq...`, never stored), one stored."""

from __future__ import annotations

import json
import os

import httpx

BOUNDARY = "inlineboundary"


def _form(parts: list[tuple[str, str, bytes]]) -> bytes:
    out = b""
    for name, kind, data in parts:
        out += (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; "
                f"filename=\"{name}\"\r\nContent-Type: {kind}\r\n\r\n").encode() + data + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


def add_inline_dir(rpc_url: str) -> dict[str, str]:
    """`add --inline --pin` of d/ (d/small: b"tiny", identity; d/big: 300 kB, stored):
    name -> CID for d, d/small and d/big."""
    body = _form([("d", "application/x-directory", b""),
                  ("d%2Fsmall", "application/octet-stream", b"tiny"),
                  ("d%2Fbig", "application/octet-stream", os.urandom(300_000))])
    r = httpx.post(f"{rpc_url}/api/v0/add?cid-version=1&inline=true&pin=true", content=body,
                   headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
                   timeout=60)
    assert r.status_code == 200, r.text
    added = {x["Name"]: x["Hash"] for x in map(json.loads, r.text.splitlines())}
    assert added["d/small"].startswith("bafkq"), added  # identity, raw: never stored
    return added
