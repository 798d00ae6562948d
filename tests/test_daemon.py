"""The daemon as a user runs it: real processes, real sockets, loopback only."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from helpers import BIN, Daemon, run_cli, wait_until

from ipfs_kit_node.client import Client

MakeDaemon = Callable[..., Daemon]
LIVENESS_S = 10.0


def test_sigterm_stops_fast_with_ready_watchdog_stopping(daemon: MakeDaemon) -> None:
    d = daemon().start(env={"WATCHDOG_USEC": "200000"})
    assert d.notify is not None
    assert d.notify.wait_for("WATCHDOG=1", 2.0), d.notify.lines()
    code, took = d.stop(signal.SIGTERM)
    assert code == 0, d.log()
    print(f"SIGTERM to exit: {took * 1000:.0f} ms")  # bench/startup.py measures it
    assert took <= LIVENESS_S  # generous: a loaded 2-core machine stretches any figure
    assert d.notify.wait_for("STOPPING=1", 1.0), d.notify.lines()
    lines = d.notify.lines()
    assert lines.index("READY=1") < lines.index("STOPPING=1")
    assert lines.count("WATCHDOG=1") >= 1
    assert not (d.repo / "api.sock").exists()
    # stderr is not a TTY here: every log line is a JSON object, py-libp2p's included.
    records = [json.loads(line) for line in d.log().splitlines() if line.strip()]
    assert records and all("event" in r and "level" in r and "timestamp" in r for r in records)
    assert any(r["event"] == "node ready" and r.get("peer") for r in records)


def test_sigint_exits_zero(daemon: MakeDaemon) -> None:
    d = daemon().start()
    code, took = d.stop(signal.SIGINT)
    assert code == 0 and took <= LIVENESS_S, d.log()


def test_repo_created_with_private_key_and_identity_persists(daemon: MakeDaemon) -> None:
    d = daemon().start()
    first = d.api("id")
    d.stop()
    key = d.repo / "identity.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(d.repo.stat().st_mode) == 0o700
    assert (d.repo / "config.toml").is_file()
    assert (d.repo / "blocks").is_dir() and (d.repo / "datastore").is_dir()

    d.start()
    second = d.api("id")
    assert second["ID"] == first["ID"]
    assert second["PublicKey"] == first["PublicKey"]


def test_api_socket_is_private(daemon: MakeDaemon) -> None:
    d = daemon().start()
    mode = (d.repo / "api.sock").stat().st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600


def test_second_daemon_on_same_repo_is_refused(daemon: MakeDaemon) -> None:
    first = daemon().start()
    assert first.proc is not None
    started = time.monotonic()
    second = subprocess.run(first.command(), capture_output=True, text=True, timeout=60)
    took = time.monotonic() - started
    print(f"\nsecond daemon refused in {took:.2f} s")
    assert second.returncode != 0
    assert took < 20  # refused, not left waiting on the lock (liveness, not speed)
    assert f"in use by process {first.proc.pid}" in second.stderr
    assert first.api("id")  # the first one is untouched


def test_id_is_shaped_like_kubo(daemon: MakeDaemon) -> None:
    d = daemon().start()
    out = d.cli("id")
    assert out.returncode == 0, out.stderr
    ident = json.loads(out.stdout)
    assert set(ident) == {"ID", "PublicKey", "Addresses", "AgentVersion", "Protocols"}
    assert ident["ID"].startswith("12D3KooW")
    assert ident["AgentVersion"].startswith("ipfs-kit-node/")
    assert "/ipfs/id/1.0.0" in ident["Protocols"] and "/ipfs/ping/1.0.0" in ident["Protocols"]
    assert all(a.startswith("/ip4/127.0.0.1/tcp/") and a.endswith("/p2p/" + ident["ID"])
               for a in ident["Addresses"])


def test_two_daemons_connect_and_see_each_other(daemon: MakeDaemon) -> None:
    a = daemon(name="a").start()
    b = daemon(role="master", name="b").start()
    out = a.cli("swarm", "connect", b.addr)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"connect {b.peer_id} success"

    def peers_of(d: Daemon) -> dict[str, dict[str, object]]:
        return {p["Peer"]: p for p in d.api("swarm/peers", {"identify": "true"})["Peers"]}

    assert wait_until(lambda: b.peer_id in peers_of(a) and a.peer_id in peers_of(b))
    seen_by_a, seen_by_b = peers_of(a)[b.peer_id], peers_of(b)[a.peer_id]
    assert seen_by_a["Direction"] == "outbound" and seen_by_b["Direction"] == "inbound"
    assert seen_by_a["Identify"]["AgentVersion"].startswith("ipfs-kit-node/")  # type: ignore[index]
    assert seen_by_b["Identify"]["AgentVersion"].startswith("ipfs-kit-node/")  # type: ignore[index]

    text = b.cli("swarm", "peers")
    assert text.returncode == 0 and a.peer_id in text.stdout
    status = json.loads(a.cli("status", "--enc", "json").stdout)
    assert status["Role"] == "worker" and status["Peers"] == 1 and status["Uptime"] > 0
    assert json.loads(b.cli("status", "--enc", "json").stdout)["Role"] == "master"


def test_bootstrap_flag_dials_at_start(daemon: MakeDaemon) -> None:
    a = daemon(name="a").start()
    b = daemon(name="b").start("--bootstrap", a.addr)
    assert wait_until(lambda: any(p["Peer"] == a.peer_id and p["FoundBy"] == "bootstrap"
                                  for p in b.api("swarm/peers")["Peers"]))


def test_swarm_connect_errors_are_clear(daemon: MakeDaemon) -> None:
    d = daemon().start()
    bad = d.cli("swarm", "connect", "/ip4/127.0.0.1/tcp/1")
    assert bad.returncode == 1 and "is not a peer address" in bad.stderr
    dead = d.cli("swarm", "connect",
                 "/ip4/127.0.0.1/tcp/9/p2p/12D3KooWFTv34iM3WJK3zhZFNARHfLkTpG6J6EG7dneg6F9hRUcY")
    assert dead.returncode == 1 and "failed" in dead.stderr
    assert d.api("id")  # still running


def test_metrics_endpoint(daemon: MakeDaemon) -> None:
    d = daemon().start()
    with Client(d.repo / "api.sock", repo=d.repo) as client:
        text = client.http_get("/metrics").decode()
    assert "ipfs_kit_peers 0.0" in text
    assert 'role="worker"' in text and "ipfs_kit_uptime_seconds" in text


def test_clients_fail_fast_without_daemon(short_tmp: Path) -> None:
    for args in (["id"], ["status"], ["swarm", "peers"]):
        started = time.monotonic()
        out = run_cli(*args, "--repo", str(short_tmp / "none"))
        took = time.monotonic() - started
        print(f"\n{args[0]} without a daemon failed in {took:.2f} s")
        assert out.returncode == 1
        assert took < 20  # no retry loop (liveness, not speed)
        assert "no ipfs-kit-node daemon is running" in out.stderr


def test_client_with_stale_socket_fails_fast(daemon: MakeDaemon) -> None:
    d = daemon().start()
    assert d.proc is not None
    d.proc.kill()  # leaves api.sock behind
    d.proc.wait()
    out = d.cli("id")
    assert out.returncode == 1 and "refused the connection" in out.stderr


def test_bad_config_fails_at_start_naming_file_and_key(daemon: MakeDaemon, short_tmp: Path
                                                       ) -> None:
    cfg = short_tmp / "bad.toml"
    cfg.write_text('[storage]\nmax_size = "-3GB"\n')
    d = daemon()
    out = subprocess.run(d.command("--config", str(cfg)), capture_output=True, text=True,
                         timeout=20)
    assert out.returncode == 2
    assert str(cfg) in out.stderr and "[storage] max_size" in out.stderr
    assert "must not be negative" in out.stderr

    out = subprocess.run(d.command("--listen", "/ip4/1.2.3/tcp/x"), capture_output=True,
                         text=True, timeout=20)
    assert out.returncode == 2 and "malformed multiaddr" in out.stderr

    out = subprocess.run(d.command(), capture_output=True, text=True, timeout=20,
                         env={**os.environ, "IPFS_KIT_STORAGE_GC_PERIOD": "often"})
    assert out.returncode == 2 and "IPFS_KIT_STORAGE_GC_PERIOD" in out.stderr


def test_repo_config_file_and_env_path(daemon: MakeDaemon, short_tmp: Path) -> None:
    repo = short_tmp / "envrepo"
    env = {"IPFS_KIT_PATH": str(repo)}
    out = run_cli("config", "show", "--role", "master", env=env)
    assert out.returncode == 0
    assert 'mode = "dhtserver"' in out.stdout and "max_size = 1000000000000" in out.stdout
    repo.mkdir()
    (repo / "config.toml").write_text('[node]\ncluster = "lab"\n')
    out = run_cli("config", "show", "--enc", "json", env=env)
    assert json.loads(out.stdout)["node"]["cluster"] == "lab"


def test_python_dash_m_runs_the_same_daemon(daemon: MakeDaemon) -> None:
    d = daemon().start(module=True)
    assert d.api("status")["Role"] == "worker"
    out = subprocess.run([sys.executable, "-m", "ipfs_kit_node", "id", "--repo", str(d.repo)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and json.loads(out.stdout)["ID"] == d.peer_id
    assert BIN.exists()
