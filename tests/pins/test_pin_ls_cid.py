"""`pin ls CID [--type T]` answers as Kubo (boxo's CheckIfPinnedWithType): a block inside a
recursive pin's DAG is `indirect through ROOT`, identity CIDs (`add --inline`, never stored)
included; a recursive root is never indirect; a direct pin inside a DAG is `direct`, or
`indirect through ROOT` when asked for indirect ones. `pin ls --type indirect` lists identity
children too. One real daemon, RPC and CLI."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from helpers import Daemon
from inline_dir import add_inline_dir
from multiformats import CID, multihash

MakeDaemon = Callable[..., Daemon]


def test_pin_ls_of_a_cid_names_the_pin_it_is_under(daemon: MakeDaemon) -> None:
    d = daemon(name="a").start()
    rpc = f"{d.rpc_url}/api/v0"
    added = add_inline_dir(d.rpc_url)
    root, tiny, big = added["d"], added["d/small"], added["d/big"]

    def ls(cid: str, kind: str = "all") -> str | None:
        out = httpx.post(f"{rpc}/pin/ls", params={"arg": cid, "type": kind}, timeout=30)
        if out.status_code != 200:
            assert f"path '{cid}' is not pinned" in out.json()["Message"], out.text
            return None
        return str(out.json()["Keys"][cid]["Type"])

    through = f"indirect through {root}"
    listed = httpx.post(f"{rpc}/pin/ls", params={"type": "indirect"}, timeout=30).json()
    assert listed["Keys"][tiny] == {"Type": "indirect"}  # left out: never stored
    assert listed["Keys"][big] == {"Type": "indirect"}
    assert ls(tiny) == through  # said "not pinned": identity children are never counted
    assert ls(big) == through  # said "indirect"
    assert ls(tiny, "indirect") == through
    assert ls(tiny, "recursive") is None and ls(tiny, "direct") is None
    assert ls(root) == "recursive" and ls(root, "indirect") is None
    elsewhere = CID("base32", 1, "raw", multihash.get("identity").wrap(b"nowhere"))
    assert ls(str(elsewhere)) is None

    r = httpx.post(f"{rpc}/pin/add", params={"arg": big, "recursive": "false"}, timeout=30)
    assert r.status_code == 200, r.text
    assert ls(big) == "direct" and ls(big, "direct") == "direct"
    assert ls(big, "indirect") == through  # both at once, as boxo (Kubo's t0081)
    r = httpx.post(f"{rpc}/pin/ls", params={"arg": root, "type": "nope"}, timeout=30)
    assert r.status_code == 400
    assert "invalid type 'nope', must be one of {direct, indirect, recursive, all}" in r.text

    out = d.cli("pin", "ls", tiny)
    assert out.returncode == 0 and out.stdout.strip() == f"{tiny} {through}", out.stderr
    r = httpx.post(f"{rpc}/pin/rm", params={"arg": root}, timeout=30)
    assert r.status_code == 200, r.text
    assert ls(tiny) is None and ls(big) == "direct" and ls(big, "indirect") is None
    listed = httpx.post(f"{rpc}/pin/ls", timeout=30).json()
    assert listed["Keys"] == {big: {"Type": "direct"}}
