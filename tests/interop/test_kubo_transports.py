"""QUIC-v1 and TLS 1.3 with a real Go Kubo v0.22 core, each dialled both ways, with 16 MiB
moving over Bitswap in both directions on each connection (sha256 equal).

Kubo is limited to the one transport (QUIC only, or TCP with TLS only) so the connection can
be nothing else. Before: py-libp2p's QUIC streams lost a Go peer's answer whenever its
STOP_SENDING or FIN raced our read, so identify and Bitswap failed on connections Kubo dialled.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import Daemon, wait_until
from kubo.harness import KuboPeer

pytestmark = pytest.mark.interop

MakeDaemon = Callable[..., Daemon]
MakeKubo = Callable[..., KuboPeer]
SIZE = 16 * 1024 * 1024
QUIC_LISTEN = "/ip4/127.0.0.1/udp/0/quic-v1"


def _our_addr(ours: Daemon, quic: bool) -> str:
    addrs = ours.api("id")["Addresses"]
    return next(a for a in addrs if ("/quic-v1/" in a) == quic)


def _sha(path: Path) -> bytes:
    return hashlib.sha256(path.read_bytes()).digest()


@pytest.mark.parametrize("we_dial", [True, False], ids=["we-dial", "kubo-dials"])
@pytest.mark.parametrize("kind", ["quic", "tls"])
def test_bitswap_both_ways_over_quic_and_tls(kind: str, we_dial: bool, daemon: MakeDaemon,
                                             kubo: MakeKubo, short_tmp: Path) -> None:
    quic = kind == "quic"
    peer = kubo(tcp=not quic, quic=quic, security=("tls",) if kind == "tls" else ("noise",))
    ours = daemon(name="ours").start("--listen", QUIC_LISTEN)
    assert any("/quic-v1/" in a for a in ours.api("id")["Addresses"])  # `id` shows both
    if we_dial:
        out = ours.cli("swarm", "connect", peer.quic_addr if quic else peer.tcp_addr)
        assert out.returncode == 0, out.stderr + ours.log()[-2000:]
    else:
        peer.connect(_our_addr(ours, quic))
    assert wait_until(lambda: any(p["Peer"] == peer.peer_id
                                  for p in ours.api("swarm/peers")["Peers"]), timeout=15)
    ours_seen = {p["Peer"]: p for p in ours.api("swarm/peers")["Peers"]}[peer.peer_id]
    assert ("/quic-v1" in ours_seen["Addr"]) == quic, ours_seen

    theirs = short_tmp / "theirs"
    theirs.write_bytes(os.urandom(SIZE))
    cid = peer.add_file(theirs)
    got = short_tmp / "got"
    started = time.monotonic()
    fetched = ours.cli("get", cid, "-o", str(got), timeout=180)
    took_in = time.monotonic() - started
    assert fetched.returncode == 0, fetched.stderr + ours.log()[-2000:]
    assert _sha(got) == _sha(theirs)

    mine = short_tmp / "mine"
    mine.write_bytes(os.urandom(SIZE))
    my_cid = ours.cli("add", "-Q", "--cid-version", "0", str(mine)).stdout.strip()
    dest = short_tmp / "kubo-got"
    started = time.monotonic()
    peer.download(my_cid, dest, timeout=180)
    took_out = time.monotonic() - started
    assert _sha(dest) == _sha(mine)
    print(f"{kind} ({'we dial' if we_dial else 'Kubo dials'}): 16 MiB Kubo->us "
          f"{took_in:.2f} s, us->Kubo {took_out:.2f} s")
    # Still the one connection, of the one kind.
    assert any(("/quic-v1" in p) == quic for p in peer.peers())
