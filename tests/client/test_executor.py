"""The executor over a real mesh (a master and two workers as processes) running a handler
from the example package (installed by pip into a folder on the workers' PYTHONPATH, never
into the venv): 500 tasks via map, one worker killed -9 mid-run, every future resolves once
with the right value."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from helpers import Mesh

from ipfs_kit_node import Client
from ipfs_kit_node.errors import TaskFailedError


def test_map_500_tasks_survives_a_worker_killed(mesh: Mesh) -> None:
    client = Client(repo=mesh.master.repo, timeout=120)
    texts = [(" word" * (i % 17 + 1)).encode() for i in range(500)]
    cids = [client.add_bytes(t) for t in texts]
    outcomes: list[object] = []
    with client.executor(result="json") as ex:
        results = ex.map("word-count", cids, params={"sleep": 0.02}, timeout=300)
        for i, value in enumerate(results):
            outcomes.append(value)
            if i == 100:  # mid-run: one worker dies without a word
                mesh.workers[0].proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
    assert outcomes == [{"words": i % 17 + 1} for i in range(500)]

    with client.executor() as ex:
        upper = ex.submit("upper", input=cids[0], result="bytes")
        failed = ex.submit("sha256", inputs=cids[:2])  # sha256 takes one input
        done = []
        upper.add_done_callback(lambda f: done.append(f))
        assert upper.result(60) == texts[0].upper()
        with pytest.raises(TaskFailedError, match="exactly one input"):
            failed.result(60)
        assert done == [upper]  # resolved once
    assert client.task.stats().get("done", 0) >= 501


def test_cancel_a_queued_task(short_tmp: Path) -> None:
    from helpers import Daemon

    master = Daemon(short_tmp, role="master").start()  # no workers: tasks wait
    try:
        client = Client(repo=master.repo)
        cid = client.add_bytes(b"x")
        with client.executor() as ex:
            future = ex.submit("sha256", input=cid)
            future.submitted.wait(10)
            assert future.cancel() and future.cancelled()
            assert client.task.status(future.task_id or "").state == "cancelled"
    finally:
        master.kill()

