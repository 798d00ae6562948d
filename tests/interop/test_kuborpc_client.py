"""kubo-rpc-client 7.1.0 (npm, on the system Node 20) against our Kubo RPC on TCP: the calls a
JS app makes, CIDs equal to `add -n` (installed by the test from the committed lock); pubsub
between two of our daemons through the client's subscribe/publish (multibase topics)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import Daemon, npm, run_cli

KUBORPC_DIR = Path(__file__).parent / "kuborpc"
MakeDaemon = Callable[..., Daemon]

pytestmark = pytest.mark.interop


def test_kubo_rpc_client(daemon: MakeDaemon, short_tmp: Path) -> None:
    npm(KUBORPC_DIR, "ci", "kubo-rpc-client")
    d = daemon(name="a").start()
    other = daemon(name="b").start("--bootstrap", d.addr)
    out = subprocess.run(["node", str(KUBORPC_DIR / "client.mjs"), d.rpc_url, str(short_tmp),
                          other.rpc_url], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:] + d.log()[-3000:] + other.log()[-2000:]
    got = json.loads(out.stdout)
    data = bytes((i * 7) % 251 for i in range(300000))
    (short_tmp / "f").write_bytes(data)
    expected = run_cli("add", "-n", "-Q", "--cid-version", "1", str(short_tmp / "f"))
    assert got["file"]["cid"] == expected.stdout.strip()
    assert got["file"]["path"] == got["file"]["cid"]  # unnamed bytes: named by their CID
    assert {t["path"] for t in got["tree"]} == {"tree/a.txt", "tree/sub/b.bin", "tree/sub",
                                               "tree"}
    assert got["catOk"] and got["ls"] == ["a.txt", "sub"]
    assert got["pinned"] and got["unpinned"]
    # repo.gc reads Kubo's lines: one CID per removed block (the unpinned file's).
    assert len(got["gc"]) >= 1 and all(c.startswith("bafkrei") for c in got["gc"]), got["gc"]
    assert got["block"]["got"] == "a block" and got["block"]["size"] == 7
    assert got["dag"]["hello"] == "world" and got["dag"]["link"] == got["block"]["cid"]
    assert got["dag"]["cid"].startswith("bafyrei")

    pubsub = got["pubsub"]
    assert pubsub["aId"] == d.peer_id and pubsub["bId"] == other.peer_id
    topic = "kubo-rpc/topic with spaces & \u00fcn\u00efcode"
    assert pubsub["topics"] == [topic]
    assert sorted((m["from"], m["data"]) for m in pubsub["messages"]) == sorted([
        (d.peer_id, "from a"), (other.peer_id, "from b")])
    assert all(m["topic"] == topic and m["seqno"] for m in pubsub["messages"])
