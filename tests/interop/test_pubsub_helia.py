"""gossipsub with Helia 7 (@libp2p/gossipsub): messages flow both ways, signed by the sender."""

from __future__ import annotations

import base64
import json
import subprocess
import threading
from collections.abc import Callable

import pytest
from helpers import BIN, Daemon, HeliaPeer, wait_until

pytestmark = pytest.mark.interop


def test_messages_both_ways(daemon: Callable[..., Daemon], helia: HeliaPeer) -> None:
    d = daemon().start()
    helia.call("subscribe", topic="mesh")
    sub = subprocess.Popen([str(BIN), "pubsub", "sub", "mesh", "--repo", str(d.repo)],
                           stdout=subprocess.PIPE, text=True)
    try:
        assert d.cli("swarm", "connect", helia.addrs[0]).returncode == 0
        assert wait_until(lambda: d.peer_id in helia.call("topicPeers", topic="mesh")["peers"]
                          and helia.peer_id in d.cli("pubsub", "peers", "mesh").stdout, 15)

        def helia_got_ours() -> bool:
            d.cli("pubsub", "pub", "mesh", "from ours")
            return any(m["data"] == "from ours" and m["from"] == d.peer_id
                       for m in helia.call("messages", topic="mesh")["messages"])

        assert wait_until(helia_got_ours, timeout=15, interval=1.0)
        helia.call("publish", topic="mesh", data="from helia")
        assert sub.stdout is not None
        threading.Timer(20, sub.kill).start()  # no message: the loop ends, the test fails
        message: dict[str, str] = {}
        for line in sub.stdout:
            message = json.loads(line)
            if message["from"] == helia.peer_id:
                break
    finally:
        sub.kill()
    assert base64.urlsafe_b64decode(message["data"][1:] + "==") == b"from helia"
