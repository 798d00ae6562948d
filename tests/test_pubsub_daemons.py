"""pubsub between daemons through the CLI, as Kubo's `ipfs pubsub` is used."""

from __future__ import annotations

import base64
import json
import subprocess
import threading
from collections.abc import Callable

from helpers import BIN, Daemon, wait_until

MakeDaemon = Callable[..., Daemon]


def test_pub_sub_between_daemons(daemon: MakeDaemon) -> None:
    a = daemon(name="a").start()
    b = daemon(name="b").start("--bootstrap", a.addr)
    assert wait_until(lambda: a.api("swarm/peers")["Peers"], timeout=30)
    sub = subprocess.Popen([str(BIN), "pubsub", "sub", "chat", "--repo", str(b.repo)],
                           stdout=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: b.peer_id in a.cli("pubsub", "peers", "chat").stdout, 30)
        assert b.cli("pubsub", "ls").stdout.split() == ["chat"]
        for i in range(3):
            assert a.cli("pubsub", "pub", "chat", f"hello {i}").returncode == 0
        assert sub.stdout is not None
        threading.Timer(60, sub.kill).start()  # never hang: a killed sub ends readline
        got = [json.loads(sub.stdout.readline() or "{}") for _ in range(3)]
    finally:
        sub.kill()
    data = [base64.urlsafe_b64decode(m["data"][1:] + "==") for m in got]
    assert data == [b"hello 0", b"hello 1", b"hello 2"]
    assert all(m["from"] == a.peer_id for m in got)
