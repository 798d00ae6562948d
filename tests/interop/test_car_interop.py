"""CARs with other tools: ipfs-car (npm) unpacks our `dag export` and gateway `?format=car`
answers (verifying every block), @ipld/car reads them, and we import what ipfs-car packs."""

from __future__ import annotations

import filecmp
import json
import random
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from helpers import BIN, Daemon, node22, npm

pytestmark = pytest.mark.interop

CAR_DIR = Path(__file__).parent / "car"


@pytest.fixture(scope="module")
def car_tools() -> None:
    npm(CAR_DIR, "ci", "ipfs-car")


def js(*args: str, timeout: float = 120) -> str:
    out = subprocess.run([str(node22()), *args], cwd=CAR_DIR, capture_output=True, text=True,
                         timeout=timeout)
    assert out.returncode == 0, out.stderr
    return out.stdout


def ipfs_car(*args: str) -> str:
    return js(str(CAR_DIR / "node_modules" / "ipfs-car" / "bin.js"), *args)


def read_car(path: Path) -> dict[str, object]:
    return json.loads(js(str(CAR_DIR / "read.mjs"), str(path)))  # type: ignore[no-any-return]


def same_tree(a: Path, b: Path) -> bool:
    cmp = filecmp.dircmp(a, b)
    if cmp.left_only or cmp.right_only or cmp.diff_files or cmp.funny_files:
        return False
    return all(same_tree(a / d, b / d) for d in cmp.common_dirs)


def make_tree(root: Path) -> Path:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "sub" / "big.bin").write_bytes(random.Random(5).randbytes(900_000))
    (root / "sub" / "deeper" / "note.txt").write_text("deep\n")
    (root / "a.txt").write_text("a\n")
    (root / "copy.txt").write_text("a\n")
    return root


@pytest.mark.parametrize("cid_version", ["0", "1"])
def test_ipfs_car_unpacks_our_exports(car_tools: None, daemon: Callable[..., Daemon],
                                      short_tmp: Path, cid_version: str) -> None:
    d = daemon().start()
    tree = make_tree(short_tmp / "tree")
    root = d.cli("add", "-r", "-Q", "--cid-version", cid_version, str(tree)).stdout.strip()

    exported = short_tmp / "export.car"
    with open(exported, "wb") as out:  # `ipfs-kit-node dag export CID > export.car`
        r = subprocess.run([str(BIN), "dag", "export", root, "--repo", str(d.repo)],
                           stdout=out, stderr=subprocess.PIPE, timeout=60)
    assert r.returncode == 0, r.stderr
    seen = read_car(exported)
    assert seen["version"] == 1 and seen["roots"] == [root]
    blocks = seen["blocks"]
    assert isinstance(blocks, list) and len(set(blocks)) == len(blocks)
    ipfs_car("unpack", str(exported), "--output", str(short_tmp / "unpacked"))
    assert same_tree(tree, short_tmp / "unpacked")

    # the gateway's CAR of a sub-folder and of one file (root: the path's end)
    with httpx.Client(base_url=d.gateway_url, timeout=60) as gw:
        sub = gw.get(f"/ipfs/{root}/sub", params={"format": "car"})
        big = gw.get(f"/ipfs/{root}/sub/big.bin", params={"format": "car",
                                                           "dag-scope": "entity"})
    (short_tmp / "sub.car").write_bytes(sub.content)
    (short_tmp / "big.car").write_bytes(big.content)
    ipfs_car("unpack", str(short_tmp / "sub.car"), "--output", str(short_tmp / "sub"))
    assert same_tree(tree / "sub", short_tmp / "sub")
    ipfs_car("unpack", str(short_tmp / "big.car"), "--output", str(short_tmp / "big.bin"))
    assert (short_tmp / "big.bin").read_bytes() == (tree / "sub" / "big.bin").read_bytes()


def test_we_import_what_ipfs_car_packs(car_tools: None, daemon: Callable[..., Daemon],
                                       short_tmp: Path) -> None:
    d = daemon().start()
    tree = make_tree(short_tmp / "tree")
    packed = short_tmp / "packed.car"
    root = ipfs_car("pack", str(tree), "--output", str(packed)).strip().splitlines()[-1]
    out = d.cli("dag", "import", str(packed))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"Pinned root\t{root}\tsuccess"
    with httpx.Client(base_url=d.gateway_url, timeout=60) as gw:
        got = gw.get(f"/ipfs/{root}/sub/big.bin").content
    assert got == (tree / "sub" / "big.bin").read_bytes()
