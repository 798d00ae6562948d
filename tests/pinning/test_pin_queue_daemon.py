"""The durable pin queue and the remote tier in a running daemon: against js-ipfs (a real
Kubo RPC server from npm) and the Cluster TEST DOUBLE (tests/doubles/cluster.py)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
from doubles.cluster import ClusterDouble
from helpers import Daemon, JsIpfs, free_port, wait_until

from ipfs_kit_node.pinning.kubo import KuboClient

pytestmark = pytest.mark.slow
MakeDaemon = Callable[..., Daemon]


def add_files(d: Daemon, root: Path, n: int, size: int = 2000) -> list[str]:
    cids = []
    for i in range(n):
        f = root / f"f{i}.bin"
        f.write_bytes(os.urandom(size))
        cids.append(d.cli("add", "-Q", "--cid-version", "1", str(f)).stdout.strip())
    return cids


def intents(d: Daemon) -> list[dict]:
    return list(d.api("pin/remote/ls", {"all": "true"})["Intents"])


def test_cluster_pins_survive_outages_faults_and_kill_9(daemon: MakeDaemon,
                                                         short_tmp: Path) -> None:
    port = free_port()
    cluster = ClusterDouble(port=port).start()
    env = {"IPFS_KIT_PINNING_CLUSTER_API": cluster.api, "IPFS_KIT_PINNING_MAX_BACKOFF": "1s",
           "IPFS_KIT_PINNING_REPLICATION_MIN": "2", "IPFS_KIT_PINNING_REPLICATION_MAX": "3"}
    d = daemon().start(env=env)
    try:
        (first,) = add_files(d, short_tmp, 1)
        out = d.cli("pin", "add", first, "--remote", "cluster", "--name", "first")
        assert out.returncode == 0 and "queued pin" in out.stdout
        assert wait_until(lambda: first in cluster.pins, 30)
        pin = cluster.pins[first]
        assert pin["name"] == "first" and pin["replication_factor_min"] == 2
        assert pin["origins"] and pin["origins"][0].endswith(d.peer_id)  # fetch from us
        assert wait_until(lambda: "cluster: pinned" in d.cli("pin", "status", first).stdout, 30)
        listed = d.cli("pin", "ls", "--remote", "cluster").stdout
        assert first in listed and "pinned" in listed
        # Bad answers: each is retried, none loses the intent.
        cids = add_files(d, short_tmp, 12)
        for mode in ("500", "truncate", "bad-json"):
            cluster.fail(mode, count=2)
            for cid in cids[:4]:
                assert d.cli("pin", "add", cid, "--remote", "cluster").returncode == 0
            cids = cids[4:] + cids[:4]
        assert wait_until(lambda: all(c in cluster.pins for c in cids), 30)
        assert all(i["state"] == "done" for i in intents(d))
        assert any(i["attempts"] > 1 for i in intents(d))
        # An outage, then kill -9 with 10 pins queued: all land after restart, each once.
        cluster.stop()
        late = add_files(d, short_tmp, 10)
        for cid in late:
            assert d.cli("pin", "add", cid, "--remote", "cluster").returncode == 0
        assert wait_until(lambda: all(i["attempts"] >= 1 for i in intents(d)
                                      if i["cid"] in late), 30)
        remote_ls = d.cli("pin", "remote", "ls").stdout
        assert remote_ls.count("queued") == 10 and "unreachable" in remote_ls
        assert d.proc is not None
        d.proc.kill()
        d.proc.wait()
        calls_before = cluster.pin_calls
        cluster = ClusterDouble(port=port).start()
        d.start(env=env)
        assert wait_until(lambda: all(c in cluster.pins for c in late), 30)
        assert cluster.pin_calls == len(late)  # none applied twice
        assert calls_before >= len(cids) + 1
        done = [i for i in intents(d) if i["cid"] in late]
        assert len(done) == 10 and {i["state"] for i in done} == {"done"}
        # Unpin goes through the queue too.
        assert d.cli("pin", "rm", late[0], "--remote", "cluster").returncode == 0
        assert wait_until(lambda: late[0] not in cluster.pins, 30)
    finally:
        cluster.stop()


def test_credentials_come_from_the_environment_and_are_never_logged(
        daemon: MakeDaemon, short_tmp: Path) -> None:
    cluster = ClusterDouble(basic="ikn:hunter2-secret").start()
    try:
        env = {"IPFS_KIT_PINNING_CLUSTER_API": cluster.api, "IPFS_KIT_LOG_LEVEL": "debug",
               "IPFS_KIT_PINNING_CLUSTER_CREDENTIALS": "env:CLUSTER_SECRET",
               "CLUSTER_SECRET": "basic:ikn:hunter2-secret"}
        d = daemon().start(env=env)
        (cid,) = add_files(d, short_tmp, 1)
        assert d.cli("pin", "add", cid, "--remote", "cluster").returncode == 0
        assert wait_until(lambda: cid in cluster.pins, 30)
        assert "hunter2" not in d.log()
        assert "hunter2" not in d.cli("config", "show").stdout
        d.stop()
        wrong = daemon(name="wrong")  # a secret of the wrong form stops the start, unshown
        wrong.launch(env={**env, "CLUSTER_SECRET": "hunter2"})
        assert wrong.proc is not None and wrong.proc.wait(20) == 2
        assert "basic:USER:PASSWORD or bearer:TOKEN" in wrong.log()
        assert "hunter2" not in wrong.log()
    finally:
        cluster.stop()


@pytest.mark.interop
def test_kubo_outage_50_pins_kill_9_restart_both(daemon: MakeDaemon, jsipfs: JsIpfs,
                                                 short_tmp: Path) -> None:
    env = {"IPFS_KIT_PINNING_KUBO_API": jsipfs.api, "IPFS_KIT_PINNING_MAX_BACKOFF": "1s"}
    d = daemon().start(env=env)
    cids = add_files(d, short_tmp, 50)
    jsipfs.stop()
    for cid in cids:
        assert d.cli("pin", "add", cid, "--remote", "kubo").returncode == 0
    assert len(d.api("pin/remote/ls")["Intents"]) == 50
    assert d.proc is not None
    d.proc.kill()
    d.proc.wait()
    jsipfs.start()
    d.start(env=env)
    assert wait_until(lambda: all(i["state"] == "done" for i in intents(d)), 120, 0.5), \
        [i for i in intents(d) if i["state"] != "done"][:2]
    assert len(intents(d)) == 50  # one intent per pin, each applied once

    async def pinned() -> list[str]:
        kubo = KuboClient(jsipfs.api)
        return [cid async for cid, kind in kubo.pin_ls(type="recursive")]

    on_kubo = trio.run(pinned)
    assert sorted(c for c in on_kubo if c in cids) == sorted(cids)
    assert len(on_kubo) == len(set(on_kubo))


@pytest.mark.interop
def test_remote_tier_evicts_pinned_blocks_and_fetches_them_back(
        daemon: MakeDaemon, jsipfs: JsIpfs, short_tmp: Path) -> None:
    env = {"IPFS_KIT_PINNING_KUBO_API": jsipfs.api, "IPFS_KIT_STORAGE_MAX_SIZE": "4MB",
           "IPFS_KIT_STORAGE_GC_WATERMARK": "50%"}
    d = daemon().start(env=env)
    f = short_tmp / "big.bin"
    f.write_bytes(os.urandom(3_000_000))
    cid = d.cli("add", "-Q", "--cid-version", "1", str(f)).stdout.strip()
    gc = d.api("repo/gc")
    assert gc["EvictedToRemote"] == 0  # pinned, and held nowhere else yet
    assert d.cli("pin", "add", cid, "--remote", "kubo").returncode == 0
    assert wait_until(lambda: "kubo: pinned" in d.cli("pin", "status", cid).stdout, 60)
    assert wait_until(lambda: d.api("repo/gc")["EvictedToRemote"] > 0, 30)
    # Restarted, the node is connected to nobody: the remote tier asks Kubo where it is,
    # dials it, and the evicted blocks come back over Bitswap.
    d.stop()
    d.start(env=env)
    assert d.api("swarm/peers")["Peers"] == []
    out = d.cli("get", cid, "-o", str(short_tmp / "back.bin"), timeout=120)
    assert out.returncode == 0, out.stderr
    assert d.api("repo/stat")["Tiers"]["remote"]["hits"] > 0
    assert d.api("bitswap/stat")["BlocksReceived"] > 0
    # Evict again, then unpin remotely: the evicted blocks come home before Kubo lets go.
    assert wait_until(lambda: d.api("repo/gc")["EvictedToRemote"] > 0, 30)
    assert d.cli("pin", "rm", cid, "--remote", "kubo").returncode == 0
    assert wait_until(lambda: "kubo: not pinned" in d.cli("pin", "status", cid).stdout, 60)
    assert d.api("repo/stat")["Tiers"]["remote"]["blocks"] == 0
    assert d.api("repo/verify")["Ok"]  # every block of the DAG is on our disk again
    assert hashlib.sha256((short_tmp / "back.bin").read_bytes()).digest() == \
        hashlib.sha256(f.read_bytes()).digest()
