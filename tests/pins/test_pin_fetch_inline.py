"""`pin add` of a DAG with identity children (`add --inline` on the peer) fetches the stored
blocks and never asks peers for an identity CID: its bytes are in it (a want for one was sent
and stayed in the wantlist after the pin). Two real daemons."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import httpx
from helpers import Daemon

MakeDaemon = Callable[..., Daemon]
BOUNDARY = "fetchinline"


def _form(parts: list[tuple[str, str, bytes]]) -> bytes:
    out = b""
    for name, kind, data in parts:
        out += (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; "
                f"filename=\"{name}\"\r\nContent-Type: {kind}\r\n\r\n").encode() + data + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


def test_pin_add_from_a_peer_wants_no_identity_cid(daemon: MakeDaemon) -> None:
    a, b = daemon(name="a").start(), daemon(name="b").start()
    body = _form([("d", "application/x-directory", b""),
                  ("d%2Fsmall", "application/octet-stream", b"tiny"),
                  ("d%2Fbig", "application/octet-stream", os.urandom(300_000))])
    r = httpx.post(f"{a.rpc_url}/api/v0/add?cid-version=1&inline=true&pin=true", content=body,
                   headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
                   timeout=60)
    assert r.status_code == 200, r.text
    added = {x["Name"]: x["Hash"] for x in map(json.loads, r.text.splitlines())}
    assert b.cli("swarm", "connect", a.addr).returncode == 0
    out = b.cli("pin", "add", added["d"], timeout=60)
    assert out.returncode == 0, out.stderr
    assert b.api("bitswap/stat")["Wantlist"] == []  # held the identity CID's want
    assert b.api("pin/ls", {"arg": added["d/small"]})["Keys"] == {
        added["d/small"]: {"Type": f"indirect through {added['d']}"}}
