"""Fixtures of the Python API tests: the example handler package, a task mesh running it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import Mesh

EXAMPLES = Path(__file__).parents[2] / "examples"


@pytest.fixture(scope="session")
def handler_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/handler_package installed by pip into a folder the workers get on their
    PYTHONPATH (never into the venv)."""
    target = tmp_path_factory.mktemp("handlers")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(target), str(EXAMPLES / "handler_package")], check=True, timeout=300)
    return target


@pytest.fixture
def mesh(short_tmp: Path, handler_package: Path) -> Iterator[Mesh]:
    """A master and two workers that run the example handlers."""
    env = {"PYTHONPATH": str(handler_package),
           "IPFS_KIT_TASKS_HANDLERS": "sha256,noop,word-count,upper",
           # Short enough that the killed worker of test_executor is given up on soon, long
           # enough that a live one on a loaded CI core is not (3 s could be).
           "IPFS_KIT_TASKS_HEARTBEAT_TIMEOUT": "10s"}
    m = Mesh(short_tmp, workers=2, leechers=0, env=env)
    try:
        yield m
    finally:
        m.close()
