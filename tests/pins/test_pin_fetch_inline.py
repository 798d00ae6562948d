"""`pin add` of a DAG with identity children (`add --inline` on the peer) fetches the stored
blocks and never asks peers for an identity CID: its bytes are in it (a want for one was sent
and stayed in the wantlist after the pin). Two real daemons."""

from __future__ import annotations

from collections.abc import Callable

from helpers import Daemon
from inline_dir import add_inline_dir

MakeDaemon = Callable[..., Daemon]


def test_pin_add_from_a_peer_wants_no_identity_cid(daemon: MakeDaemon) -> None:
    a, b = daemon(name="a").start(), daemon(name="b").start()
    added = add_inline_dir(a.rpc_url)
    assert b.cli("swarm", "connect", a.addr).returncode == 0
    out = b.cli("pin", "add", added["d"], timeout=60)
    assert out.returncode == 0, out.stderr
    assert b.api("bitswap/stat")["Wantlist"] == []  # held the identity CID's want
    assert b.api("pin/ls", {"arg": added["d/small"]})["Keys"] == {
        added["d/small"]: {"Type": f"indirect through {added['d']}"}}
