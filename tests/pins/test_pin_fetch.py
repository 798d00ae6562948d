"""`pin add` fetches what is missing from peers (as Kubo), then GC keeps it: two real daemons."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from helpers import BIN, Daemon

from ipfs_kit_node.client import Client

MakeDaemon = Callable[..., Daemon]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_pin_add_fetches_from_a_peer_and_survives_gc(daemon: MakeDaemon, short_tmp: Path
                                                     ) -> None:
    a, b = daemon(name="a").start(), daemon(name="b").start()
    folder = short_tmp / "folder"
    (folder / "sub").mkdir(parents=True)
    files = {folder / "one.txt": b"one\n", folder / "sub" / "two.bin": os.urandom(300_000)}
    for path, data in files.items():
        path.write_bytes(data)
    big = short_tmp / "big.bin"
    big.write_bytes(os.urandom(16 * 1024 * 1024))  # the benchmark runs 64 MiB
    single = short_tmp / "single.txt"
    single.write_bytes(b"just one block\n")
    root = a.cli("add", "-Q", "-r", str(folder)).stdout.strip()
    big_cid = a.cli("add", "-Q", str(big)).stdout.strip()
    one_cid = a.cli("add", "-Q", str(single)).stdout.strip()
    assert b.cli("swarm", "connect", a.addr).returncode == 0

    done = b.cli("pin", "add", "--progress", "--name", "mine", root, big_cid, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"pinned {root} recursively" in done.stdout and "Fetched/Processed" in done.stderr
    direct = b.cli("pin", "add", "--recursive=false", one_cid)
    assert direct.returncode == 0, direct.stderr
    # The same through the RPC, streamed as Kubo streams it: progress objects, then the pins.
    with Client(b.repo / "api.sock", repo=b.repo, timeout=60) as client, \
            client.stream("pin/add", {"arg": big_cid, "progress": "true"}) as response:
        docs = [json.loads(line) for line in response.iter_lines() if line.strip()]
    assert docs[-1] == {"Pins": [big_cid]}
    # Kubo's AddPinOutput: {"Progress": nodes, "Bytes": bytes} every 0.5 s, Go's omitempty
    # dropping a zero; the last count before the pins covers the whole DAG (64 leaves, root).
    assert all(set(d) <= {"Progress", "Bytes"} for d in docs[:-1])
    assert docs[-2]["Progress"] == 65 and docs[-2]["Bytes"] > 16 * 1024 * 1024

    listing = b.cli("pin", "ls", "--type", "recursive", "-n").stdout
    assert f"{root} recursive mine" in listing and f"{big_cid} recursive mine" in listing
    assert b.cli("pin", "ls", "-t", "direct", "-q").stdout.split() == [one_cid]
    assert b.cli("pin", "ls", "-t", "indirect", "-q").stdout.split()  # the DAGs' blocks

    a.stop()
    gc = b.cli("repo", "gc", "--full")
    assert gc.returncode == 0, gc.stderr
    wanted = [(big_cid, big.read_bytes()), (one_cid, single.read_bytes())] + [
        (f"/ipfs/{root}/{p.relative_to(folder).as_posix()}", d) for p, d in files.items()]
    for path, data in wanted:
        cat = subprocess.run([str(BIN), "cat", path, "--repo", str(b.repo)],
                             capture_output=True, timeout=60)
        assert cat.returncode == 0, cat.stderr
        assert sha(cat.stdout) == sha(data)
    verify = b.cli("pin", "verify", "--verbose")
    assert verify.returncode == 0 and verify.stdout.count(" ok") == 3, verify.stdout


def test_pin_add_of_a_cid_nobody_has_fails_clearly(daemon: MakeDaemon) -> None:
    a, b = daemon(name="a").start(), daemon(name="b").start()
    assert b.cli("swarm", "connect", a.addr).returncode == 0
    nobody = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
    out = b.cli("pin", "add", "--timeout", "2", nobody, timeout=60)
    assert out.returncode == 1 and nobody in out.stderr, out.stderr
    assert b.api("pin/ls")["Keys"] == {}
    assert b.api("bitswap/stat")["Wantlist"] == []
