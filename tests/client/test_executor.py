"""The executor over a real mesh (a master and two workers as processes) running a handler
from the example package (installed by pip into a folder on the workers' PYTHONPATH, never
into the venv): 500 tasks via map, one worker killed -9 mid-run, every future resolves once
with the right value."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import trio
from helpers import Mesh

from ipfs_kit_node import AsyncClient, Client
from ipfs_kit_node.client.types import TaskInfo
from ipfs_kit_node.errors import ApiError, TaskFailedError


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

    # One task, submitted and waited on in one request (task/submit?wait=true).
    info = client.task.run("upper", [cids[1]], wait=60)
    assert info.state == "done" and client.cat(info.output or "") == texts[1].upper()

    async def run_async() -> TaskInfo:
        async with AsyncClient(repo=mesh.master.repo) as c:
            return await c.task.run("sha256", [cids[2]], wait=60)

    assert trio.run(run_async).state == "done"


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
        unfinished = client.task.run("sha256", [cid], wait=0.5)  # no worker: still queued
        assert unfinished.state == "queued" and not unfinished.final
        with pytest.raises(ApiError, match="timeout must be"):
            client.task.run("sha256", [cid], wait=0.5, timeout=-1)
    finally:
        master.kill()

