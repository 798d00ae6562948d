"""Fixtures of the hostile-input suite (the code is in hostile_kit.py).

Nothing here is autouse: tests opt in through ``hostile_worker`` (one worker daemon with a
known file per module), ``start_target`` (a factory for other roles or settings), ``health``
(assert_healthy) and ``fuzz_report`` (a summary printed at the end and written as JSON).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hostile_kit import FuzzReport, Target, assert_healthy, short_folder, start


@pytest.fixture(scope="module")
def hostile_root() -> Iterator[Path]:
    path = short_folder()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def start_target(hostile_root: Path) -> Iterator[Callable[..., Target]]:
    """Factory: start_target(role="worker", name="node", env=None) -> Target; killed at the
    end of the module."""
    made: list[Target] = []

    def make(role: str = "worker", name: str = "node", env: dict[str, str] | None = None,
             *extra: str) -> Target:
        target = start(hostile_root, role, name, env, *extra)
        made.append(target)
        return target

    yield make
    for t in made:
        t.daemon.kill()


@pytest.fixture(scope="module")
def hostile_worker(start_target: Callable[..., Target]) -> Target:
    """One worker daemon with a known file, shared by a module's tests."""
    return start_target("worker", "worker")


@pytest.fixture
def health() -> Callable[..., dict[str, Any]]:
    """assert_healthy(daemon, baseline_rss_kib, known=None) -> figures."""
    return assert_healthy


@pytest.fixture
def fuzz_report(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FuzzReport]:
    report = FuzzReport(request.node.name, tmp_path)
    yield report
    report.write()
