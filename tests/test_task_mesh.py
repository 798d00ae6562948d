"""The task mesh end to end: a master, workers and a leecher as separate processes on loopback."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest
from helpers import BIN, Daemon, Mesh, cat, journal_finals, submit, wait_until

from ipfs_kit_node.client import Client
from ipfs_kit_node.errors import ApiError
from ipfs_kit_node.protocols.tasks import ResultBatch, Task, decode, encode

pytestmark = pytest.mark.slow


@pytest.fixture
def mesh(short_tmp: Path) -> Iterator[Mesh]:
    m = Mesh(short_tmp, env={"IPFS_KIT_TASKS_SNAPSHOT_PERIOD": "1s"})
    try:
        yield m
    finally:
        m.close()


def wait_all(daemon: object, ids: list[str], timeout: float = 120.0) -> dict[str, dict]:
    out = {}
    deadline = time.monotonic() + timeout
    for task_id in ids:
        left = max(1.0, deadline - time.monotonic())
        out[task_id] = daemon.api("task/wait",  # type: ignore[attr-defined]
                                  {"arg": task_id, "timeout": str(left)}, timeout=left + 10)
    return out


class ResultsWatcher:
    """`pubsub sub` on the results topic: every outcome the master published, counted.

    It runs on the master, which publishes there and (unlike the other roles) does not
    subscribe itself: each outcome it publishes is delivered locally, with no gossip to lose it.
    """

    TOPIC = "/ipfs-kit/default/results"

    def __init__(self, daemon: Daemon) -> None:
        self.proc = subprocess.Popen(
            [str(BIN), "pubsub", "sub", self.TOPIC, "--repo", str(daemon.repo)],
            stdout=subprocess.PIPE, text=True)
        self.seen: dict[str, int] = {}
        threading.Thread(target=self._read, daemon=True).start()
        assert wait_until(lambda: self.TOPIC in daemon.api("pubsub/ls")["Strings"], 15)
        time.sleep(0.5)  # listed as it starts subscribing

    def _read(self) -> None:
        import base64

        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            data = base64.urlsafe_b64decode(json.loads(line)["data"][1:] + "==")
            body = decode(data)
            assert isinstance(body, ResultBatch)
            for result in body.results:
                self.seen[result.task_id] = self.seen.get(result.task_id, 0) + 1

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def assert_each_published_once(self, ids: list[str]) -> None:
        """Outcomes were seen (so the check checks something), all of these tasks, and none
        twice."""
        assert self.seen, "the watcher saw no outcome at all"
        assert set(self.seen) <= set(ids), set(self.seen) - set(ids)
        twice = {k: v for k, v in self.seen.items() if v > 1}
        assert not twice, twice


def test_200_tasks_with_real_inputs_end_to_end(mesh: Mesh, short_tmp: Path) -> None:
    leecher = mesh.leechers[0]
    files = []
    for i in range(8):  # 1 KiB to ~700 KiB: one block and multi-chunk files
        path = short_tmp / f"in{i}.bin"
        path.write_bytes(os.urandom(1024 + i * 100_000))
        cid = leecher.cli("add", "-Q", str(path)).stdout.strip()
        files.append((cid, path.read_bytes()))
    tasks = []
    for n in range(200):
        a, b = files[n % 8], files[(n + 3) % 8]
        kind = ("sha256", "concat", "unixfs-stat")[n % 3]
        inputs = [a[0]] if kind == "sha256" else [a[0], b[0]]
        tasks.append({"handler": kind, "inputs": inputs, "params": {"n": n}})
    watcher = ResultsWatcher(mesh.master)
    try:
        ids = submit(leecher, tasks)
        assert len(set(ids)) == 200
        outcomes = wait_all(leecher, ids)
    finally:
        time.sleep(1)
        watcher.stop()
    assert all(o["State"] == "done" for o in outcomes.values()), \
        [o for o in outcomes.values() if o["State"] != "done"][:3]
    workers = {o["Worker"] for o in outcomes.values()}
    assert workers == {w.peer_id for w in mesh.workers}  # both took work
    for n, task_id in enumerate(ids):  # every output is right, read back by the leecher
        a, b = files[n % 8], files[(n + 3) % 8]
        output = cat(leecher, outcomes[task_id]["Output"])
        if n % 3 == 0:
            assert output == hashlib.sha256(a[1]).hexdigest().encode() + b"\n"
        elif n % 3 == 1:
            assert output == a[1] + b[1]
        else:
            stats = json.loads(output)
            assert [s["cid"] for s in stats] == [a[0], b[0]]
            assert [s["size"] for s in stats] == [len(a[1]), len(b[1])]
    assert all(v == 1 for v in journal_finals(mesh.master.repo).values())
    watcher.assert_each_published_once(ids)
    listed = leecher.api("task/list", {"state": "done"})["Tasks"]
    assert {t["ID"] for t in listed} == set(ids)
    # The master pinned the results it fetched from the workers.
    outputs = {o["Output"] for o in outcomes.values()}
    assert wait_until(lambda: outputs <= set(mesh.master.api("pin/ls")["Keys"]), 30)
    # Submit and wait in one request, on the master and forwarded by the leecher: the answer
    # carries each accepted task's outcome.
    body = json.dumps({"tasks": [{"handler": "sha256", "inputs": [files[0][0]]}] * 2}).encode()
    for daemon in (mesh.master, leecher):
        with Client(daemon.repo / "api.sock", repo=daemon.repo, timeout=60) as client:
            answer = client.call("task/submit", {"wait": "true", "timeout": "30"}, body=body)
            assert [t["ID"] for t in answer["Tasks"]] == answer["Accepted"]
            assert all(t["State"] == "done" and t["Output"] == outcomes[ids[0]]["Output"]
                       for t in answer["Tasks"]), answer
            with pytest.raises(ApiError, match="timeout must be"):
                client.call("task/submit", {"wait": "true", "timeout": "-1"}, body=body)
    # The CLI's --wait: the IDs, then each outcome.
    waited = leecher.cli("task", "submit", "sha256", "--input", files[0][0], "--count", "2",
                         "--wait", timeout=60)
    lines = waited.stdout.splitlines()
    assert waited.returncode == 0 and len(lines) == 4, waited
    assert lines[2:] == [f"{i} done: {outcomes[ids[0]]['Output']}" for i in lines[:2]]


def test_kill_9_a_worker_mid_run(mesh: Mesh) -> None:
    leecher = mesh.leechers[0]
    watcher = ResultsWatcher(mesh.master)
    ids = submit(leecher, [{"handler": "noop", "params": {"ms": 150}}] * 120)
    victim = mesh.workers[0]
    victim_id, survivor = victim.peer_id, mesh.workers[1].peer_id
    assert wait_until(lambda: any(t["Worker"] == victim_id for t in
                                  mesh.master.api("task/list", {"state": "assigned"})["Tasks"]),
                      15)
    time.sleep(1.0)
    assert victim.proc is not None
    victim.proc.kill()  # SIGKILL: no goodbye, tasks in flight
    victim.proc.wait()
    try:
        outcomes = wait_all(leecher, ids)
    finally:
        time.sleep(1)
        watcher.stop()
    assert all(o["State"] == "done" for o in outcomes.values())
    assert {o["Worker"] for o in outcomes.values()} <= {victim_id, survivor}
    assert sum(o["Worker"] == survivor for o in outcomes.values()) > 60
    finals = journal_finals(mesh.master.repo)
    assert set(ids) <= set(finals) and all(v == 1 for v in finals.values())
    watcher.assert_each_published_once(ids)
    assert "worker gone; its tasks are requeued" in mesh.master.log()


def test_kill_9_the_master_loses_no_accepted_task(mesh: Mesh) -> None:
    leecher = mesh.leechers[0]
    ids = submit(leecher, [{"handler": "noop", "params": {"ms": 50}}] * 300)
    assert mesh.master.proc is not None
    mesh.master.proc.kill()  # right after the acknowledgement
    mesh.master.proc.wait()
    mesh.start_master()
    outcomes = wait_all(leecher, ids, timeout=180)
    assert all(o["State"] == "done" for o in outcomes.values()), \
        {o["State"] for o in outcomes.values()}
    on_master = {t["ID"]: t for t in mesh.master.api("task/list")["Tasks"]}
    assert set(ids) <= set(on_master)
    assert all(on_master[i]["State"] == "done" for i in ids)
    assert "task journal replayed" in mesh.master.log()


def test_forged_malformed_and_unknown_are_ignored_with_a_log_line(mesh: Mesh) -> None:
    leecher, worker = mesh.leechers[0], mesh.workers[0]
    topic = "/ipfs-kit/default/tasks"
    # Another worker is no master: what it publishes as a task is dropped by everyone.
    rogue = mesh.workers[1]
    forged = encode(Task("forged", "concat", inputs=()))
    assert wait_until(lambda: rogue.peer_id in mesh.master.cli("pubsub", "peers", topic).stdout,
                      60)
    for data in (forged, b"\xc1 not msgpack at all", msgpack.packb({"v": 1, "kind": "exec"})):
        proc = subprocess.run([str(BIN), "pubsub", "pub", topic, "--repo", str(rogue.repo)],
                              input=data, capture_output=True, timeout=30)
        assert proc.returncode == 0, proc.stderr
    assert wait_until(lambda: "task from a peer that is not a configured master ignored"
                      in worker.log(), 60), worker.log()[-2000:]
    assert wait_until(lambda: "task from a peer not in tasks.submitters ignored"
                      in mesh.master.log(), 60)
    assert wait_until(lambda: "malformed task-mesh message ignored" in worker.log(), 60)
    assert "forged" not in {t["ID"] for t in mesh.master.api("task/list")["Tasks"]}
    # A worker is not a listed submitter: the master refuses its submissions.
    refused = rogue.cli("task", "submit", "noop")
    assert refused.returncode == 1 and "tasks.submitters" in refused.stderr
    # A handler no worker allows is refused at once, with what is allowed.
    unknown = leecher.cli("task", "submit", "rm-rf")
    assert unknown.returncode == 1 and "no worker allows handler 'rm-rf'" in unknown.stderr
    assert "sha256" in unknown.stderr
    (good,) = submit(leecher, [{"handler": "noop"}])
    assert leecher.api("task/wait", {"arg": good, "timeout": "20"})["State"] == "done"
    for d in mesh.all():
        assert d.proc is not None and d.proc.poll() is None


def test_cluster_state_as_parquet_while_running(mesh: Mesh, short_tmp: Path) -> None:
    import pyarrow.parquet as pq

    ids = submit(mesh.master, [{"handler": "noop"}] * 20)
    wait_all(mesh.master, ids)
    out = mesh.master.cli("cluster", "state", "--format", "parquet", "-o",
                          str(short_tmp / "state"))
    assert out.returncode == 0, out.stderr
    tasks = pq.read_table(short_tmp / "state" / "tasks.parquet").to_pylist()
    assert {t["task_id"] for t in tasks} >= set(ids)
    assert {t["state"] for t in tasks if t["task_id"] in ids} == {"done"}
    workers = pq.read_table(short_tmp / "state" / "workers.parquet")
    assert workers.num_rows == 2 and workers.schema.field("capacity").type == "int64"
    # The daemon's own snapshot (every second here) is readable by another process meanwhile.
    snapshot = mesh.master.repo / "tasks" / "tasks.parquet"
    def rows() -> int:  # one open file: see test_periodic_gc_and_snapshot_while_running
        with open(snapshot, "rb") as f:
            return int(pq.read_table(f).num_rows)

    assert wait_until(lambda: snapshot.exists() and rows() >= 20, 20)
    state = json.loads(mesh.master.cli("cluster", "state").stdout)
    assert len(state["workers"]) == 2
    assert mesh.leechers[0].cli("cluster", "state").returncode == 1  # a master's view only


def test_sigterm_with_tasks_in_flight_is_fast(mesh: Mesh) -> None:
    submit(mesh.leechers[0], [{"handler": "noop", "params": {"ms": 2000}}] * 8)
    time.sleep(1.0)
    for d in [*mesh.workers, mesh.master]:
        code, took = d.stop(signal.SIGTERM)
        assert code == 0 and took < 10.0  # generous; bench/startup.py measures SIGTERM


def test_a_burst_of_10000_tasks_loses_none(mesh: Mesh) -> None:
    leecher = mesh.leechers[0]
    ids = submit(leecher, [{"handler": "noop"}] * 10_000)  # forwarded in batches
    assert len(set(ids)) == 10_000
    assert wait_until(lambda: len(mesh.master.api("task/list", {"state": "done"})["Tasks"])
                      == 10_000, 180, interval=1.0)
    assert wait_until(lambda: len(leecher.api("task/list", {"state": "done"})["Tasks"])
                      == 10_000, 30)  # every outcome reached the submitter too
    finals = journal_finals(mesh.master.repo)
    assert len(finals) == 10_000 and set(finals.values()) == {1}


def test_master_pins_results_through_the_pinning_layer(short_tmp: Path) -> None:
    from doubles.cluster import ClusterDouble

    cluster = ClusterDouble().start()  # the Cluster TEST DOUBLE (no real Cluster here)
    mesh = Mesh(short_tmp, workers=1, leechers=0,
                env={"IPFS_KIT_PINNING_CLUSTER_API": cluster.api})
    try:
        inputs = []
        for i in range(3):
            path = short_tmp / f"r{i}.txt"
            path.write_bytes(f"result input {i}\n".encode() * 100)
            inputs.append(mesh.master.cli("add", "-Q", str(path)).stdout.strip())
        ids = submit(mesh.master, [{"handler": "sha256", "inputs": [c]} for c in inputs])
        outputs = {o["Output"] for o in wait_all(mesh.master, ids).values()}
        assert len(outputs) == 3
        assert wait_until(lambda: outputs <= set(cluster.pins), 30)
        assert all(cluster.pins[o]["name"] == "ipfs-kit-node task result" for o in outputs)
    finally:
        mesh.close()
        cluster.stop()
