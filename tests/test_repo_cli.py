"""The store through the daemon: block, pin and repo commands from the CLI."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

from blockfiles import damage_block
from helpers import Daemon, run_cli, wait_until

from ipfs_kit_node.storage.blocks import to_cid

MakeDaemon = Callable[..., Daemon]
NO_MEMORY = {"IPFS_KIT_STORAGE_MEMORY_SIZE": "0"}  # every read hits the disk tier


def test_block_put_get_stat_pin_gc(daemon: MakeDaemon, short_tmp: Path) -> None:
    d = daemon().start(env=NO_MEMORY)
    files = []
    for i in range(3):
        f = short_tmp / f"f{i}"
        f.write_bytes(os.urandom(500).hex().encode() + b"x" * i)
        files.append(f)
    cids = []
    for f in files:
        out = d.cli("block", "put", str(f))
        assert out.returncode == 0, out.stderr
        cids.append(out.stdout.strip())
    assert cids[0].startswith("bafkrei")
    got = d.cli("block", "get", cids[1])
    assert got.returncode == 0 and got.stdout == files[1].read_text()
    raw = d.api("block/stat", {"arg": cids[1]})
    assert raw == {"Key": cids[1], "Size": 1001}
    assert d.cli("pin", "add", cids[0]).returncode == 0
    assert d.cli("pin", "ls").stdout.split() == [cids[0], "recursive"]

    stat = json.loads(d.cli("repo", "stat", "--enc", "json").stdout)
    assert stat["NumObjects"] == 3 and stat["RepoSize"] == 3003
    assert stat["Tiers"]["disk"]["blocks"] == 3 and stat["Tiers"]["pins"] == 1
    assert "hit ratio" in d.cli("repo", "stat").stdout

    gc = d.cli("repo", "gc", "--full")
    assert gc.returncode == 0 and "removed 2 blocks" in gc.stdout, gc.stdout
    missing = d.cli("block", "get", cids[1])
    assert missing.returncode == 1 and "not found" in missing.stderr
    assert d.cli("pin", "rm", cids[0]).returncode == 0
    assert d.cli("block", "rm", cids[0]).returncode == 0

    # Through the Kubo RPC on TCP (REPO/api, when the CLI sees no socket) repo/gc answers as
    # Kubo's, a line per removed block: the CLI counts them (it read a summary and crashed).
    for f in files[1:]:
        assert d.cli("block", "put", str(f)).returncode == 0
    over_tcp = run_cli("repo", "gc", "--repo", str(d.repo),
                       env={"IPFS_KIT_API_SOCKET": str(short_tmp / "nowhere.sock")})
    assert over_tcp.returncode == 0 and "removed 2 blocks" in over_tcp.stdout, \
        over_tcp.stdout + over_tcp.stderr

    # Restart: the store keeps what it had.
    again = short_tmp / "again"
    again.write_bytes(b"kept across restarts")
    cid = d.cli("block", "put", str(again), "--pin").stdout.strip()
    d.stop()
    d.start(env=NO_MEMORY)
    assert d.cli("block", "get", cid).stdout == "kept across restarts"
    assert d.api("pin/ls")["Keys"] == {cid: {"Type": "direct"}}


def test_block_get_bytes_are_exact(daemon: MakeDaemon, short_tmp: Path) -> None:
    d = daemon().start()
    data = os.urandom(300_000)
    f = short_tmp / "blob"
    f.write_bytes(data)
    cid = d.cli("block", "put", str(f), "--cid-codec", "raw").stdout.strip()
    from ipfs_kit_node.client import Client

    with Client(d.repo / "api.sock", repo=d.repo) as client, \
            client.stream("block/get", {"arg": cid}) as response:
        assert hashlib.sha256(response.read()).digest() == hashlib.sha256(data).digest()


def test_verify_finds_a_corrupt_block(daemon: MakeDaemon, short_tmp: Path) -> None:
    d = daemon().start(env=NO_MEMORY)
    f = short_tmp / "x"
    f.write_bytes(b"soon to be corrupted")
    cid = d.cli("block", "put", str(f)).stdout.strip()
    damage_block(d.repo, bytes(to_cid(cid).digest), b"bit rot")
    out = d.cli("repo", "verify")
    assert out.returncode == 1
    assert f"corrupt (quarantined): {cid}" in out.stdout
    assert d.cli("block", "get", cid).returncode == 1
    assert d.cli("repo", "verify").returncode == 0


def test_bad_cids_and_bytes_are_clear_errors(daemon: MakeDaemon) -> None:
    d = daemon().start()
    out = d.cli("block", "get", "not-a-cid")
    assert out.returncode == 1 and "is not a CID" in out.stderr
    out = d.cli("pin", "add", "bafkreie5nqv6kd3qnfjupgvz34woh3oksc3iau6abmyajn7qvtf6d2ho34")
    assert out.returncode == 1 and "not found" in out.stderr
    assert d.api("status")  # still running


def test_periodic_gc_and_snapshot_while_running(daemon: MakeDaemon, short_tmp: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from helpers import wait_until

    env = {"IPFS_KIT_STORAGE_MAX_SIZE": "10000", "IPFS_KIT_STORAGE_GC_WATERMARK": "50%",
           "IPFS_KIT_STORAGE_GC_PERIOD": "300ms", "IPFS_KIT_STORAGE_SNAPSHOT_PERIOD": "200ms"}
    d = daemon().start(env=env)
    for i in range(8):
        f = short_tmp / f"b{i}"
        f.write_bytes(os.urandom(1000))
        assert d.cli("block", "put", str(f)).returncode == 0
    assert wait_until(lambda: d.api("repo/stat")["RepoSize"] <= 5000, timeout=30)
    # Another process reads the index snapshot while the daemon runs.
    snapshot = d.repo / "datastore" / "index.parquet"
    # Read through one open file: by path, pyarrow stats then opens, and a replacement between
    # the two makes it read a footer at the old size's offset.
    def read() -> pa.Table:
        with open(snapshot, "rb") as f:
            return pq.read_table(f)

    assert wait_until(lambda: snapshot.exists() and read().num_rows
                      == d.api("repo/stat")["NumObjects"], timeout=30)
    table = read()
    assert set(table.column_names) >= {"cid", "size", "tier", "heat", "pinned", "access_count"}


def test_kubo_repo_gc_streams_and_a_client_that_leaves_does_not_stop_it(
        daemon: MakeDaemon, short_tmp: Path) -> None:
    """Kubo's repo/gc streams a line per removed block as it goes; a client that reads one
    line and hangs up leaves the GC running to its end, and the daemon answering."""
    import httpx

    d = daemon().start()
    for n in range(2):  # two unpinned files of 1,500 blocks each
        f = short_tmp / f"big{n}"
        f.write_bytes(os.urandom(1_500_000))
        out = d.cli("add", "-Q", "--pin", "false", "--chunker", "size-1000", str(f))
        assert out.returncode == 0, out.stderr
    assert json.loads(d.cli("repo", "stat", "--enc", "json").stdout)["NumObjects"] >= 3000
    with httpx.Client(timeout=60) as http, \
            http.stream("POST", f"{d.rpc_url}/api/v0/repo/gc") as response:
        assert response.status_code == 200
        first = next(response.iter_lines())
        assert json.loads(first)["Key"]["/"].startswith("bafkrei")
    wait_until(lambda: json.loads(d.cli("repo", "stat", "--enc", "json").stdout)
               ["NumObjects"] == 0, timeout=60)
    assert d.proc is not None and d.proc.poll() is None
    again = short_tmp / "again"
    again.write_bytes(os.urandom(3000))
    assert d.cli("add", "-Q", "--pin", "false", str(again)).returncode == 0
    with httpx.Client(timeout=60) as http:
        lines = http.post(f"{d.rpc_url}/api/v0/repo/gc").text.splitlines()
        assert len(lines) == 1 and json.loads(lines[0])["Key"]["/"].startswith("bafkrei")
        assert http.post(f"{d.rpc_url}/api/v0/repo/gc", params={"silent": "true"}).text == ""


def test_kubo_repo_gc_that_fails_part_way_raises_after_its_lines(tmp_path: Path) -> None:
    """A GC that fails after a slice (a stand-in GC: the real one cannot be made to fail on
    cue) ends the stream with its error, after the lines of what it removed: the server
    sends that as Kubo's X-Stream-Error trailer. A consumer that left earlier makes no
    error inside the GC (its lines go nowhere)."""
    from types import SimpleNamespace
    from typing import Any

    import pytest
    import trio
    from dag import raw_block

    from ipfs_kit_node.api.routes.blocks import BlockRoutes
    from ipfs_kit_node.errors import StoreError
    from ipfs_kit_node.storage import StoreConfig, TieredStore
    from ipfs_kit_node.storage.blocks import key_of

    cid, _ = raw_block(size=10)
    ended: list[str] = []

    async def failing_gc(*, removed: Callable[[list[bytes]], None], **_: Any) -> None:
        removed([key_of(cid)])
        await trio.sleep(0.1)
        removed([key_of(cid)])  # after the consumer below left
        ended.append("raised")
        raise StoreError("the index is damaged")

    async def main() -> None:
        store = await TieredStore.open(tmp_path, StoreConfig(parquet_export=False))
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run)
            store.gc = failing_gc  # type: ignore[method-assign,assignment]
            routes = BlockRoutes(SimpleNamespace(store=store), tmp_path)  # type: ignore[arg-type]
            lines = []
            with pytest.raises(StoreError, match="damaged"):
                async for chunk in routes._kubo_gc(silent=False):
                    lines.append(chunk)
            assert len(lines) == 2 and str(cid) in lines[0].decode()
            ended.clear()
            body = routes._kubo_gc(silent=False)
            assert str(cid) in (await anext(body)).decode()
            await body.aclose()  # the client left
            with trio.fail_after(10):
                while not ended:
                    await trio.sleep(0.05)
            nursery.cancel_scope.cancel()

    trio.run(main)
