"""A real daemon's Kubo RPC on TCP: found through REPO/api, and start refused (exit 2, one
line naming the key) when the address is taken or open to the network without auth."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Callable

import httpx
from helpers import Daemon

MakeDaemon = Callable[..., Daemon]


def test_rpc_serves_id_over_tcp(daemon: MakeDaemon) -> None:
    d = daemon().start()
    r = httpx.post(f"{d.rpc_url}/api/v0/id", timeout=30)
    assert r.status_code == 200 and r.json()["ID"] == d.peer_id
    code, _ = d.stop()
    assert code == 0 and not (d.repo / "api").exists()


def test_rpc_start_refusals_exit_2(daemon: MakeDaemon) -> None:
    d = daemon()
    env = {**os.environ, "IPFS_KIT_ROUTING_MDNS": "false",
           "IPFS_KIT_API_LISTEN": "/ip4/0.0.0.0/tcp/0"}
    out = subprocess.run(d.command(), capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "[api] authorizations" in out.stderr and "/ip4/0.0.0.0/tcp/0" in out.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        addr = f"/ip4/127.0.0.1/tcp/{taken.getsockname()[1]}"
        env["IPFS_KIT_API_LISTEN"] = addr
        out = subprocess.run(d.command(), capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 2, out.stderr[-2000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(f"Error: cannot listen on {addr}") and "[api] listen" in last
