"""The scripts in examples/ run as a user runs them (a subprocess, the daemon found through
IPFS_KIT_PATH) against real daemons; each prints a JSON summary checked here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from helpers import Daemon, Mesh

EXAMPLES = Path(__file__).parents[2] / "examples"
MakeDaemon = Callable[..., Daemon]


def run_example(name: str, repo: Path, *args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True,
                         text=True, timeout=120, env={**os.environ, "IPFS_KIT_PATH": str(repo)})
    assert out.returncode == 0, out.stderr[-3000:]
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_versioned_dataset_and_model_registry(daemon: MakeDaemon) -> None:
    d = daemon().start()
    got = run_example("versioned_dataset.py", d.repo)
    assert got["v1"]["cid"] != got["v2"]["cid"]
    assert got["v1"]["rows"] == 20_000 and got["v2"]["rows"] == 22_000
    assert got["v2"]["east"] != got["v1"]["east"]

    reg = run_example("model_registry.py", d.repo)
    first, second = reg["versions"]
    assert first["format"] == "npz" and first["cid"] != second["cid"]
    assert second["mse"] < 0.05  # fitted on 2,000 samples: close to the noise (0.01)
    again = run_example("model_registry.py", d.repo, "--index", reg["index"])
    assert [v["cid"] for v in again["versions"][:2]] == [first["cid"], second["cid"]]
    assert len(again["versions"]) == 4  # the old index extended, nothing lost


def test_distributed_processing(mesh: Mesh) -> None:
    got = run_example("distributed_processing.py", mesh.master.repo)
    assert got["partitions"] == 100 and got["words"] == got["expected"]
    assert sum(got["per_worker"].values()) == 100
    assert len(got["per_worker"]) == 2, got  # both workers took a share
