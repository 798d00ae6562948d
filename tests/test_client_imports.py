"""Client commands stay light: they never import what only the daemon needs.

A client command (`id`, `pin ls`, `task submit`...) once took about a second because it
imported all of py-libp2p through repo.py. This runs the real CLI in a fresh interpreter
against a repo with no daemon and lists what it imported.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

DAEMON_ONLY = ("libp2p", "pyarrow", "zeroconf", "prometheus_client", "psutil", "multiformats")
#: Libraries whose import alone cost a client command a quarter of its time: h11 with the
#: dataclasses, inspect and typing it pulls in took 26 ms of ~85 (the client reads HTTP/1.1 with
#: client/_h1.py; typing only under TYPE_CHECKING on this path).
HEAVY = ("h11", "dataclasses", "inspect", "typing", "anyio", "httpx")

PROBE = """
import json, sys
from ipfs_kit_node.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})), file=sys.stderr)
"""


@pytest.mark.parametrize("command", [["id"], ["pin", "ls"], ["task", "list"], ["status"]])
def test_client_command_imports_nothing_daemon_only(tmp_path: Path, command: list[str]) -> None:
    out = subprocess.run([sys.executable, "-c", PROBE, *command, "--repo", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert "no ipfs-kit-node daemon is running" in out.stderr
    loaded = set(json.loads(out.stderr.strip().splitlines()[-1]))
    assert not loaded & set(DAEMON_ONLY), sorted(loaded & set(DAEMON_ONLY))
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_add_imports_nothing_daemon_only(tmp_path: Path) -> None:
    """`add` hashes and prints CIDs without multiformats (~25 ms of a 64 MiB add to import):
    `-n` runs the whole importer, as `add` does before its upload."""
    (tmp_path / "f").write_bytes(b"x" * 300_000)
    out = subprocess.run([sys.executable, "-c", PROBE, "add", "-n", "-r", str(tmp_path / "f"),
                          "--cid-version", "1"], capture_output=True, text=True, timeout=60)
    assert out.stdout.startswith("added bafy"), out.stderr[-2000:]
    loaded = set(json.loads(out.stderr.strip().splitlines()[-1]))
    assert not loaded & set(DAEMON_ONLY), sorted(loaded & set(DAEMON_ONLY))


def test_add_of_a_file_passed_open_imports_neither_the_importer_nor_heavy_modules(
        daemon: Any, short_tmp: Path) -> None:
    """The file passed open is chunked and hashed by the daemon: the command then needs no
    importer (with its hashlib, dataclasses and inspect, ~25 ms of a ~100 ms small add)."""
    d = daemon().start()
    (short_tmp / "f").write_bytes(b"x" * 300_000)
    probe = PROBE.replace("m.split('.')[0] for m in sys.modules", "m for m in sys.modules")
    out = subprocess.run([sys.executable, "-c", probe, "add", "-Q", "--repo", str(d.repo),
                          str(short_tmp / "f")], capture_output=True, text=True, timeout=60)
    assert out.stdout.startswith("Qm"), out.stderr[-2000:]
    loaded = set(json.loads(out.stderr.strip().splitlines()[-1]))
    assert not {m for m in loaded if m.startswith("ipfs_kit_node.unixfs")}, sorted(loaded)
    assert not {m.split(".")[0] for m in loaded} & {*DAEMON_ONLY, *HEAVY}
