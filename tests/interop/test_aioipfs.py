"""aioipfs 0.7.1 (PyPI) against our Kubo RPC on TCP: the calls a Python asyncio app makes, CIDs
equal to `add -n`.

aioipfs pins aiohttp 3.9.5 (newer ones reject the open files its block/dag put pass), which
clashes with nothing of ours but is not our dependency: the test makes a scratch venv of its own
beside this file once per checkout (under a lock, as tests/kubo/harness.py does) from the
`aioipfs` extra's pins, and runs aioipfs/client.py there."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import Daemon, run_cli

HERE = Path(__file__).resolve().parent / "aioipfs"
VENV = HERE / ".venv"
#: Kept equal to the `aioipfs` extra in pyproject.toml.
PINS = ["aioipfs==0.7.1", "aiohttp==3.9.5"]
MakeDaemon = Callable[..., Daemon]

pytestmark = pytest.mark.interop


def aioipfs_python() -> Path:
    """The scratch venv's python, made on first use; skips only when PyPI cannot be reached."""
    python = VENV / "bin" / "python"
    marker = VENV / ".ready"
    if marker.exists():
        return python
    lock = os.open(HERE, os.O_RDONLY)  # a lock on the folder: no stray lock file to ignore
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return python
        shutil.rmtree(VENV, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, timeout=300)
        try:
            subprocess.run([str(python), "-m", "pip", "install", "--quiet",
                            "--disable-pip-version-check", *PINS],
                           check=True, capture_output=True, timeout=600)
        except subprocess.CalledProcessError as exc:
            shutil.rmtree(VENV, ignore_errors=True)
            detail = (exc.stderr or b"").decode(errors="replace")
            if "No matching distribution" in detail or "Could not find" in detail \
                    or "NewConnectionError" in detail or "Temporary failure" in detail:
                pytest.skip(f"PyPI unreachable, cannot install {PINS}: {detail[-300:]}")
            raise
        marker.touch()
    finally:
        os.close(lock)
    return python


def test_aioipfs_client(daemon: MakeDaemon, short_tmp: Path) -> None:
    python = aioipfs_python()
    d = daemon().start()
    host, port = d.rpc_url.removeprefix("http://").rsplit(":", 1)
    work = short_tmp / "work"
    work.mkdir()
    out = subprocess.run([str(python), str(HERE / "client.py"), host, port, str(work)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:] + d.log()[-3000:]
    got = json.loads(out.stdout)

    data = bytes((i * 7) % 251 for i in range(300000))
    (short_tmp / "f").write_bytes(data)
    expected = run_cli("add", "-n", "-Q", "--cid-version", "1", str(short_tmp / "f"))
    assert got["file"]["cid"] == expected.stdout.strip()
    assert got["file"]["name"] == got["file"]["cid"]  # unnamed bytes: named by their CID
    tree = {t["name"]: t["cid"] for t in got["tree"]}
    assert set(tree) == {"tree/a.txt", "tree/sub/b.bin", "tree/sub", "tree"}
    expected_root = run_cli("add", "-n", "-Q", "-r", "--cid-version", "1", str(work / "tree"))
    assert tree["tree"] == expected_root.stdout.strip()
    assert got["catOk"] and got["ls"] == ["a.txt", "sub"]
    assert got["pinned"] and got["unpinned"]
    # repo.gc as Kubo answers it: a {"Key": {"/": CID}} line per removed block, named as a
    # raw CIDv1 of its multihash; the unpinned file (a dag-pb root and two raw leaves) went,
    # the pinned tree stayed.
    assert len(got["gc"]) >= 3 and all(c.startswith("bafkrei") for c in got["gc"]), got["gc"]
    assert got["goneAfterGc"] and got["treeKept"]
    assert got["block"]["got"] == "a block" and got["block"]["size"] == 7
    assert got["block"]["cid"].startswith("bafkrei")  # cid-codec=raw honoured
    assert got["dag"]["hello"] == "world" and got["dag"]["link"] == got["block"]["cid"]
    assert got["dag"]["cid"].startswith("bafyrei")
