"""mDNS between two daemons in two network namespaces the test creates (a veth pair and
addresses of its own), with no other discovery: they find and connect to each other."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator

import pytest
from helpers import Daemon, wait_until

MakeDaemon = Callable[..., Daemon]


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def two_namespaces() -> Iterator[tuple[tuple[str, str], tuple[str, str]]]:
    if os.geteuid() != 0:
        pytest.skip("creating network namespaces needs root")
    if shutil.which("ip") is None:
        pytest.skip("iproute2 (ip) is not installed")
    tag = secrets.token_hex(3)
    a, b = f"ikn-a-{tag}", f"ikn-b-{tag}"
    try:
        ip("netns", "add", a)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot create network namespaces here: {exc.stderr.decode().strip()}")
    ip("netns", "add", b)
    try:
        ip("link", "add", f"va{tag}", "type", "veth", "peer", "name", f"vb{tag}")
        for ns, dev, addr in ((a, f"va{tag}", "10.77.0.1"), (b, f"vb{tag}", "10.77.0.2")):
            ip("link", "set", dev, "netns", ns)
            ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            ip("-n", ns, "link", "set", dev, "up")
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", dev)
        yield (a, "10.77.0.1"), (b, "10.77.0.2")
    finally:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


def test_daemons_find_each_other_with_mdns_only(daemon: MakeDaemon,
                                                two_namespaces: tuple[tuple[str, str], ...]
                                                ) -> None:
    (ns_a, ip_a), (ns_b, ip_b) = two_namespaces
    mdns_on = {"IPFS_KIT_ROUTING_MDNS": "true"}
    a = daemon(name="a").start(env=mdns_on, listen=f"/ip4/{ip_a}/tcp/4101",
                               prefix=("ip", "netns", "exec", ns_a))
    b = daemon(name="b").start(env=mdns_on, listen=f"/ip4/{ip_b}/tcp/4101",
                               prefix=("ip", "netns", "exec", ns_b))

    def found(x: Daemon, y: Daemon) -> bool:
        return any(p["Peer"] == y.peer_id and p["FoundBy"] in ("mdns", "inbound")
                   for p in x.api("swarm/peers")["Peers"])

    assert wait_until(lambda: found(a, b) and found(b, a), timeout=20), a.log()[-2000:]
    seen = {p["Peer"]: p for p in a.api("swarm/peers")["Peers"]}
    assert seen[b.peer_id]["Addr"].startswith(f"/ip4/{ip_b}/")
