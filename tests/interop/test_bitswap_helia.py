"""Bitswap with a real Helia 7 node: it fetches from us, we fetch from it (and from two peers)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import BIN, Daemon, HeliaPeer, helia_peer

pytestmark = pytest.mark.interop
MIB = 1024 * 1024
HELIA_OPTS = {
    "unixfs-v0-2015": {"cidVersion": 0, "rawLeaves": False, "chunkSize": 256 * 1024,
                       "maxChildrenPerNode": 174},
    "unixfs-v1-2025": {"cidVersion": 1, "rawLeaves": True, "chunkSize": MIB,
                       "maxChildrenPerNode": 1024},
}


def random_file(folder: Path, size: int, name: str = "data") -> tuple[Path, str]:
    f = folder / name
    data = os.urandom(size)
    f.write_bytes(data)
    return f, hashlib.sha256(data).hexdigest()


def our_cat(d: Daemon, cid: str) -> tuple[int, str, str]:
    out = subprocess.run([str(BIN), "cat", cid, "--repo", str(d.repo)], capture_output=True,
                         timeout=180)
    return out.returncode, hashlib.sha256(out.stdout).hexdigest(), out.stderr.decode()


@pytest.mark.parametrize("profile", ["unixfs-v0-2015", "unixfs-v1-2025"])
def test_helia_fetches_64_mib_from_us(daemon: Callable[..., Daemon], helia: HeliaPeer,
                                      short_tmp: Path, profile: str) -> None:
    d = daemon().start()
    f, digest = random_file(short_tmp, 64 * MIB)
    cid = d.cli("add", "-Q", "--profile", profile, str(f)).stdout.strip()
    helia.call("dial", addr=d.addr)
    got = helia.call("cat", cid=cid, out=str(short_tmp / "out"), timeoutMs=120_000, timeout=150)
    assert got["bytes"] == 64 * MIB and got["sha256"] == digest
    stat = d.api("bitswap/stat")
    assert stat["DataSent"] >= 64 * MIB and stat["Wantlist"] == []


def test_helia_fetches_a_small_raw_block(daemon: Callable[..., Daemon], helia: HeliaPeer,
                                         short_tmp: Path) -> None:
    d = daemon().start()
    f, digest = random_file(short_tmp, 300)
    cid = d.cli("block", "put", str(f)).stdout.strip()
    assert cid.startswith("bafkrei")
    helia.call("dial", addr=d.addr)
    got = helia.call("cat", cid=cid, out=str(short_tmp / "out"), timeoutMs=30_000)
    assert got["sha256"] == digest


@pytest.mark.parametrize("profile", ["unixfs-v0-2015", "unixfs-v1-2025"])
def test_we_fetch_64_mib_from_helia(daemon: Callable[..., Daemon], helia: HeliaPeer,
                                    short_tmp: Path, profile: str) -> None:
    d = daemon().start(env={"IPFS_KIT_STORAGE_MEMORY_SIZE": "8MiB"})
    f, digest = random_file(short_tmp, 64 * MIB)
    cid = helia.call("add", path=str(f), **HELIA_OPTS[profile])["cid"]
    assert d.cli("swarm", "connect", helia.addrs[0]).returncode == 0
    code, got, err = our_cat(d, cid)
    assert code == 0, err + d.log()[-3000:]
    assert got == digest
    stat = d.api("bitswap/stat")
    assert stat["DataReceived"] >= 64 * MIB and stat["Unsolicited"] == 0
    text = d.cli("bitswap", "stat").stdout
    assert "wantlist [0 keys]" in text and helia.peer_id in text


def test_we_fetch_from_two_peers_at_once(daemon: Callable[..., Daemon], helia: HeliaPeer,
                                         short_tmp: Path) -> None:
    f, digest = random_file(short_tmp, 16 * MIB)
    opts = HELIA_OPTS["unixfs-v0-2015"]
    cid = helia.call("add", path=str(f), **opts)["cid"]
    seeder = daemon(name="seeder").start()
    assert seeder.cli("add", "-Q", str(f)).stdout.strip() == cid
    fetcher = daemon(name="fetcher").start()
    for addr in (helia.addrs[0], seeder.addr):
        assert fetcher.cli("swarm", "connect", addr).returncode == 0
    code, got, err = our_cat(fetcher, cid)
    assert code == 0, err
    assert got == digest
    ledgers = fetcher.api("bitswap/stat")["Ledgers"]
    from_helia = ledgers.get(helia.peer_id, {}).get("BlocksReceived", 0)
    from_seeder = ledgers.get(seeder.peer_id, {}).get("BlocksReceived", 0)
    assert from_helia > 0 and from_seeder > 0, ledgers
    assert from_helia + from_seeder >= 65  # 64 leaves + the root


@pytest.mark.slow
def test_fetches_still_work_after_idle_streams_close(daemon: Callable[..., Daemon],
                                                      short_tmp: Path) -> None:
    d = daemon().start()
    with helia_peer(short_tmp / "helia.log") as helia:
        helia.call("dial", addr=d.addr)
        first, first_digest = random_file(short_tmp, 2 * MIB, "first")
        cid = d.cli("add", "-Q", str(first)).stdout.strip()
        assert helia.call("cat", cid=cid, out=str(short_tmp / "o1"))["sha256"] == first_digest
        theirs, their_digest = random_file(short_tmp, 2 * MIB, "theirs")
        their_cid = helia.call("add", path=str(theirs), **HELIA_OPTS["unixfs-v0-2015"])["cid"]
        code, got, _ = our_cat(d, their_cid)
        assert code == 0 and got == their_digest
        time.sleep(11)  # Helia closes idle Bitswap streams after 10 s
        second, second_digest = random_file(short_tmp, 2 * MIB, "second")
        cid2 = d.cli("add", "-Q", str(second)).stdout.strip()
        assert helia.call("cat", cid=cid2, out=str(short_tmp / "o2"))["sha256"] == second_digest
        again, again_digest = random_file(short_tmp, 2 * MIB, "again")
        again_cid = helia.call("add", path=str(again), **HELIA_OPTS["unixfs-v0-2015"])["cid"]
        code, got, _ = our_cat(d, again_cid)
        assert code == 0 and got == again_digest
