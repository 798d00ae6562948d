"""`dag export` / `dag import` through the CLI and the RPC, between two real daemons."""

from __future__ import annotations

import random
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
from helpers import BIN, Daemon
from multiformats import CID, multihash

from ipfs_kit_node.codecs import car
from ipfs_kit_node.codecs.car import CarBlock, CarHeader, CarReader


def test_export_then_import_into_another_node(daemon: Callable[..., Daemon],
                                              short_tmp: Path) -> None:
    a, b = daemon(name="a").start(), daemon(name="b").start()
    folder = short_tmp / "data"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "big.bin").write_bytes(random.Random(3).randbytes(600_000))
    (folder / "one.txt").write_text("one\n")
    (folder / "same.txt").write_text("one\n")  # a duplicate block: sent once
    root = a.cli("add", "-r", "-Q", str(folder)).stdout.strip()

    archive = short_tmp / "x.car"
    with open(archive, "wb") as out:  # `dag export CID > x.car`
        exported = subprocess.run([str(BIN), "dag", "export", root, "--repo", str(a.repo)],
                                  stdout=out, stderr=subprocess.PIPE, timeout=60)
    assert exported.returncode == 0, exported.stderr
    body = archive.read_bytes()
    with httpx.Client(base_url=a.rpc_url, timeout=30) as rpc:
        assert rpc.post("/api/v0/dag/export", params={"arg": root}).content == body
    reader = CarReader()
    events = reader.feed(body)
    reader.close()
    assert isinstance(events[0], CarHeader) and [str(r) for r in events[0].roots] == [root]
    blocks = [e for e in events if isinstance(e, CarBlock)]
    assert len({e.cid for e in blocks}) == len(blocks) == a.api("repo/stat")["NumObjects"]

    imported = b.cli("dag", "import", str(archive))
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == f"Pinned root\t{root}\tsuccess"
    assert root in b.api("pin/ls")["Keys"]
    got = httpx.get(f"{b.gateway_url}/ipfs/{root}/sub/big.bin", timeout=30).content
    assert got == (folder / "sub" / "big.bin").read_bytes()


def test_bad_archives_are_refused_and_the_node_lives_on(daemon: Callable[..., Daemon],
                                                        short_tmp: Path) -> None:
    d = daemon().start()
    good = b"real bytes"
    cid = CID("base32", 1, "raw", multihash.digest(good, "sha2-256"))
    forged = car.encode_header([cid]) + car.encode_block(cid, b"forged bytes")
    truncated = car.encode_header([cid]) + car.encode_block(cid, good)[:-3]
    with httpx.Client(base_url=d.rpc_url, timeout=30) as rpc:
        for body, words in ((forged, "does not match its CID"), (truncated, "middle"),
                            (b"not a car at all", "CAR")):
            r = rpc.post("/api/v0/dag/import", content=body)
            assert r.status_code == 400, r.text
            assert words in r.json()["Message"]
        # Kubo's clients send the archive as a multipart file
        ok = car.encode_header([cid]) + car.encode_block(cid, good)
        r = rpc.post("/api/v0/dag/import", files={"file": ("x.car", ok)},
                     params={"stats": "true"})
        assert r.status_code == 200, r.text
        lines = [line for line in r.text.splitlines() if line]
        assert '"PinErrorMsg": ""' in lines[0] and '"BlockCount": 1' in lines[1]
    missing = short_tmp / "nope.car"
    out = d.cli("dag", "import", str(missing))
    assert out.returncode != 0 and "cannot read" in out.stderr
    assert d.api("id")["ID"]
