"""Kubo RPC commands on a real daemon over TCP, with a plain HTTP client (httpx) sending what
Kubo's clients send: multipart add (files, folders, symlinks), cat offset/length, get (tar),
ls, block and dag put/get, version, pubsub's multibase topics."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import httpx
from helpers import Daemon, run_cli

MakeDaemon = Callable[..., Daemon]


def post(d: Daemon, command: str, params: dict[str, str] | None = None, **kw: object
         ) -> httpx.Response:
    return httpx.post(f"{d.rpc_url}/api/v0/{command}", params=params, timeout=60, **kw)  # type: ignore[arg-type]


def lines(r: httpx.Response) -> list[dict[str, object]]:
    assert r.status_code == 200, r.text
    return [json.loads(x) for x in r.text.splitlines() if x]


def test_add_cat_get_ls(daemon: MakeDaemon, short_tmp: Path) -> None:
    d = daemon().start()
    tree = short_tmp / "tree"
    (tree / "sub").mkdir(parents=True)
    data = bytes(range(256)) * 4000  # 1,024,000 bytes: several chunks
    (tree / "big.bin").write_bytes(data)
    (tree / "sub" / "a b.txt").write_text("hello\n")
    files = [
        ("file", ("tree", b"", "application/x-directory")),
        ("file", ("tree%2Fbig.bin", data, "application/octet-stream")),
        ("file", ("tree%2Fsub", b"", "application/x-directory")),
        ("file", ("tree%2Fsub%2Fa%20b.txt", b"hello\n", "application/octet-stream")),
    ]
    out = lines(post(d, "add", {"cid-version": "1", "progress": "true"}, files=files))
    added = {o["Name"]: o for o in out if "Hash" in o}
    assert set(added) == {"tree/big.bin", "tree/sub/a b.txt", "tree/sub", "tree"}
    assert any(o.get("Bytes") == len(data) for o in out)  # progress lines
    assert isinstance(added["tree"]["Size"], str)  # Kubo sends Size as a string
    cli = run_cli("add", "-r", "-n", "-Q", "--cid-version", "1", str(tree))
    assert cli.returncode == 0, cli.stderr
    root = str(added["tree"]["Hash"])
    assert root == cli.stdout.strip()

    r = post(d, "cat", {"arg": f"/ipfs/{root}/big.bin", "offset": "300000", "length": "5000"})
    assert r.status_code == 200 and r.content == data[300000:305000]
    assert post(d, "cat", {"arg": f"{root}/sub/a b.txt"}).content == b"hello\n"
    r = post(d, "cat", {"arg": f"{root}/nope"})
    assert r.status_code in (404, 500) and r.json()["Type"] == "error"

    ls = post(d, "ls", {"arg": root}).json()
    assert sorted(link["Name"] for link in ls["Objects"][0]["Links"]) == ["big.bin", "sub"]

    with tarfile.open(fileobj=io.BytesIO(post(d, "get", {"arg": root}).content)) as tar:
        assert sorted(tar.getnames()) == [root, f"{root}/big.bin", f"{root}/sub",
                                          f"{root}/sub/a b.txt"]
        member = tar.extractfile(f"{root}/big.bin")
        assert member is not None and member.read() == data

    # pinned by default; only-hash stores nothing
    pins = post(d, "pin/ls").json()["Keys"]
    assert root in pins
    r = lines(post(d, "add", {"only-hash": "true", "wrap-with-directory": "true"},
                   files=[("file", ("x.txt", b"not stored", "application/octet-stream"))]))
    assert [o["Name"] for o in r][-1] == ""
    assert post(d, "block/stat", {"arg": str(r[0]["Hash"])}).status_code in (404, 500)


def test_block_dag_version_pubsub(daemon: MakeDaemon) -> None:
    d = daemon().start()
    r = post(d, "block/put", {"cid-codec": "raw"},
             files=[("file", ("", b"a block", "application/octet-stream"))])
    key = r.json()["Key"]
    assert post(d, "block/get", {"arg": key}).content == b"a block"
    assert post(d, "block/stat", {"arg": key}).json() == {"Key": key, "Size": 7}

    node = {"name": "x", "link": {"/": key}, "bytes": {"/": {"bytes": "AAE"}}, "n": [1, 2.5]}
    r = post(d, "dag/put", {"store-codec": "dag-cbor", "input-codec": "dag-json"},
             files=[("file", ("", json.dumps(node).encode(), "application/octet-stream"))])
    cid = r.json()["Cid"]["/"]
    assert cid.startswith("bafyrei")
    assert post(d, "dag/get", {"arg": cid}).json() == node
    assert post(d, "dag/resolve", {"arg": f"{cid}/link"}).json()["Cid"] == {"/": key}
    stat = post(d, "dag/stat", {"arg": cid}).json()
    assert stat["UniqueBlocks"] == 2 and stat["DagStats"][0]["NumBlocks"] == 2
    assert post(d, "version").json()["Version"]
    r = post(d, "pubsub/sub", {"arg": "not multibase!"})
    assert r.status_code == 400
    r = post(d, "routing/findprovs", {"arg": key, "num-providers": "1"})
    assert r.status_code == 200
