"""Shared pieces of the hostile-input suite: a daemon holding a known file, the health check
every hostile test ends with, and the figures the suite reports (stalls, `id` latency, RSS).

Imported as ``hostile_kit`` (a distinct name: ``conftest`` is ambiguous with tests/conftest.py);
the fixtures are in this folder's conftest.py.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers import Daemon, cat, memory_kib

from ipfs_kit_node.client import Client

KNOWN_SIZE = 1 << 20
RSS_GROWTH_LIMIT_MIB = 50
LIVENESS_S = 10.0  # generous: the machine is shared; the real figure is measured and reported


@dataclass(frozen=True)
class KnownFile:
    cid: str
    data: bytes


@dataclass
class Target:
    """A running daemon with a pinned 1 MiB file and its RSS once that file was served."""

    daemon: Daemon
    known: KnownFile
    baseline_rss_kib: int

    def healthy(self) -> dict[str, Any]:
        return assert_healthy(self.daemon, self.baseline_rss_kib, self.known)


def short_folder() -> Path:
    """Unix socket paths must stay under 108 bytes, so not pytest's tmp_path."""
    return Path(tempfile.mkdtemp(prefix="ikn-h-", dir="/tmp"))


def start(root: Path, role: str = "worker", name: str = "node",
          env: dict[str, str] | None = None, *extra: str) -> Target:
    """Start a daemon, add a known random file (pinned, so `repo gc` keeps it), serve it once,
    then take the RSS baseline."""
    d = Daemon(root, role=role, name=name).start(*extra, env=env, timeout=60)
    try:
        data = os.urandom(KNOWN_SIZE)
        path = root / f"known-{name}.bin"
        path.write_bytes(data)
        added = d.cli("add", "-Q", str(path), timeout=60)
        assert added.returncode == 0, added.stderr
        known = KnownFile(added.stdout.strip(), data)
        assert cat(d, known.cid) == data
        assert d.proc is not None
        return Target(d, known, memory_kib(d.proc.pid))
    except BaseException:
        d.kill()  # nobody else holds it yet
        raise


def api_get(d: Daemon, path: str, timeout: float = LIVENESS_S) -> bytes:
    with Client(d.repo / "api.sock", repo=d.repo, timeout=timeout) as client:
        return client.http_get(path)


def loop_figures(d: Daemon) -> dict[str, Any]:
    """The daemon's own stall figures: the status route and the Prometheus gauges."""
    status = d.api("status", timeout=LIVENESS_S)
    figures: dict[str, Any] = {"LongestStallMs": status.get("LongestStallMs"),
                               "StalledTask": status.get("StalledTask")}
    for line in api_get(d, "/metrics").decode().splitlines():
        name, _, value = line.partition(" ")
        if name in ("ipfs_kit_loop_longest_stall_seconds", "ipfs_kit_loop_stalls"):
            figures[name] = float(value)
    return figures


def timed_id(d: Daemon, timeout: float = 60.0) -> float:
    """Seconds `id` took to answer (raises if it did not answer within ``timeout``)."""
    started = time.monotonic()
    d.api("id", timeout=timeout)
    return time.monotonic() - started


def assert_healthy(daemon: Daemon, baseline_rss_kib: int,
                   known: KnownFile | None = None) -> dict[str, Any]:
    """The daemon is alive, `id` answers within 10 s, the known file still reads back
    byte-identical, RSS grew by at most 50 MiB and `repo verify` is clean. Returns the figures
    (for the report) so a caller can print them."""
    proc = daemon.proc
    assert proc is not None and proc.poll() is None, (
        f"daemon exited {proc.returncode if proc else None}:\n{daemon.log()[-4000:]}")
    latency = timed_id(daemon)
    assert latency < LIVENESS_S, f"id took {latency:.1f} s"
    if known is not None:
        assert cat(daemon, known.cid) == known.data, "the known file no longer reads back"
    rss = memory_kib(proc.pid)
    growth_mib = (rss - baseline_rss_kib) / 1024
    assert growth_mib <= RSS_GROWTH_LIMIT_MIB, f"RSS grew {growth_mib:.0f} MiB"
    verify = daemon.api("repo/verify", timeout=120)
    assert verify["Ok"] and not verify["Corrupt"] and not verify["Missing"], verify
    assert proc.poll() is None, "daemon exited during the health check"
    return {"id_latency_s": round(latency, 4), "rss_kib": rss,
            "rss_growth_mib": round(growth_mib, 1), "verify": verify, **loop_figures(daemon)}


class IdProbe:
    """Calls `id` every ``interval`` seconds from a thread while a fuzzer runs: the worst
    latency seen under load, and how many calls failed or took over 10 s."""

    def __init__(self, daemon: Daemon, interval: float = 0.5) -> None:
        self.daemon = daemon
        self.interval = interval
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.latencies.append(timed_id(self.daemon))
            except Exception as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}"[:300])

    def __enter__(self) -> IdProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(70)

    @property
    def worst(self) -> float:
        return max(self.latencies, default=0.0)

    def figures(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        return {"id_probes": len(lat), "id_probe_failures": self.failures[:10],
                "id_max_s": round(lat[-1], 4) if lat else None,
                "id_p50_s": round(lat[len(lat) // 2], 4) if lat else None,
                "id_over_1s": sum(x > 1.0 for x in lat)}


def _held_ms(line: str) -> float:
    """The ``ms`` field of an "event loop held" log line (JSON or key=value)."""
    match = re.search(r"\bms\W{1,3}([0-9.]+)", line)
    return float(match.group(1)) if match else 0.0


@dataclass
class FuzzReport:
    """What one fuzz test measured, printed at its end (pytest -s) and written as JSON."""

    name: str
    folder: Path
    counts: dict[str, int] = field(default_factory=dict)
    findings: list[dict[str, Any]] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def count(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def finding(self, kind: str, **details: Any) -> None:
        """A probable bug (an unexpected 500, a dropped connection...): kept with its input."""
        self.count(f"finding:{kind}")
        if sum(f["kind"] == kind for f in self.findings) < 50:
            self.findings.append({"kind": kind, **details})

    def stalls_logged(self, daemon: Daemon, since: int, label: str = "") -> None:
        """The daemon logs each task step over 100 ms with its task: keep the ones from the
        fuzz window (``since`` is the log size when it began)."""
        text = daemon.log()[since:]
        held = [line[:400] for line in text.splitlines() if "event loop held" in line]
        worst = sorted(held, key=_held_ms, reverse=True)
        prefix = f"{label} " if label else ""
        self.figures[f"{prefix}longest logged stall (ms)"] = _held_ms(worst[0]) if worst else 0
        self.figures[f"{prefix}longest logged stalls"] = worst[:10]
        self.count(f"{prefix}loop held over 100 ms (logged)", len(held))

    def write(self) -> Path:
        path = self.folder / f"fuzz-{self.name}.json"
        path.write_text(json.dumps({"name": self.name, "counts": self.counts,
                                    "figures": self.figures, "findings": self.findings},
                                   indent=2, default=str))
        print(f"\n===== hostile fuzz summary: {self.name} =====")
        for key, value in sorted(self.counts.items()):
            print(f"  {key}: {value}")
        for key, value in self.figures.items():
            print(f"  {key}: {json.dumps(value, default=str)[:600]}")
        for f in self.findings[:20]:
            print(f"  FINDING {json.dumps(f, default=str)[:600]}")
        print(f"  (full report: {path})")
        return path


