"""Hostile input at the node's own edges: the control API's arguments and connections, pubsub
subscribers, the command line's startup errors. Each case ends with the daemon healthy."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from helpers import BIN, Daemon, wait_until
from hostile_kit import LIVENESS_S, Target, timed_id


def _post(d: Daemon, path: str, params: dict[str, str] | None = None,
          timeout: float = 30.0) -> httpx.Response:
    transport = httpx.HTTPTransport(uds=str(d.repo / "api.sock"))
    with httpx.Client(transport=transport, base_url="http://x", timeout=timeout) as client:
        return client.post(path, params=params)


def _is_kubo_error(response: httpx.Response) -> bool:
    body = response.json()
    return set(body) == {"Message", "Code", "Type"} and body["Type"] == "error"


def test_bad_integer_argument_is_a_400(hostile_worker: Target) -> None:
    """Before: `num-providers=abc` raised ValueError out of the route and the node exited 1."""
    d = hostile_worker.daemon
    response = _post(d, "/api/v0/dht/findprovs",
                     {"arg": hostile_worker.known.cid, "num-providers": "abc"})
    assert response.status_code == 400 and _is_kubo_error(response), response.text
    assert "num-providers" in response.json()["Message"]
    hostile_worker.healthy()


def test_huge_peer_and_cid_arguments_are_refused_early(hostile_worker: Target) -> None:
    """Before: `dht/findpeer` with a 60 KB argument held the loop for 14 s."""
    d = hostile_worker.daemon
    figures = {}
    for path, key in (("/api/v0/dht/findpeer", "arg"), ("/api/v0/block/stat", "arg"),
                      ("/api/v0/swarm/connect", "arg")):
        started = time.monotonic()
        response = _post(d, path, {key: "1" * 60_000})
        figures[path] = round(time.monotonic() - started, 3)
        assert response.status_code == 400 and _is_kubo_error(response), response.text
        assert len(response.json()["Message"]) < 400  # the argument is not echoed whole
    print(f"60 KB argument answered in (s): {figures}")
    hostile_worker.healthy()


def test_two_subscribers_to_the_roles_topic_each_get_every_message(
        hostile_worker: Target) -> None:
    """Before: a second subscriber of /ipfs-kit/default/status shared the role's queue (each
    got half the messages), and when it left the role's loop died and the node exited."""
    d = hostile_worker.daemon
    topic = "/ipfs-kit/default/status"
    with _subscription(d, topic) as first, _subscription(d, topic) as second:
        assert wait_until(lambda: len(first) >= 2 and len(second) >= 2, timeout=30), (
            len(first), len(second))
    # Both left; the role's own subscription must still be fed.
    with _subscription(d, topic) as third:
        assert wait_until(lambda: len(third) >= 2, timeout=30)
    assert wait_until(lambda: topic not in d.api("pubsub/ls")["Strings"], timeout=LIVENESS_S)
    hostile_worker.healthy()


def test_a_client_that_hangs_up_ends_its_request(hostile_worker: Target) -> None:
    """The handler of a client that left is cancelled (here: its subscription ends, though no
    message ever came that would have failed to send)."""
    d = hostile_worker.daemon
    topic = "hangup-test"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(d.repo / "api.sock"))
        s.sendall(f"POST /api/v0/pubsub/sub?arg={topic} HTTP/1.1\r\nHost: x\r\n"
                  "Content-Length: 0\r\n\r\n".encode())
        assert wait_until(lambda: topic in d.api("pubsub/ls")["Strings"], timeout=LIVENESS_S)
    assert wait_until(lambda: topic not in d.api("pubsub/ls")["Strings"], timeout=LIVENESS_S)


def test_slow_and_broken_http_clients_do_not_block_others(hostile_worker: Target) -> None:
    d = hostile_worker.daemon
    socks = []
    try:
        for partial in (b"POST /api/v0/id HTTP/1.1\r\nHost: x\r\n",  # headers never end
                        b"POST /api/v0/block/put HTTP/1.1\r\nHost: x\r\n"
                        b"Content-Length: 1000000\r\n\r\nabc",  # body never ends
                        b"\x16\x03\x01\x02\x00garbage\r\n\r\n"):  # not HTTP at all
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(str(d.repo / "api.sock"))
            s.sendall(partial)
            socks.append(s)
        assert timed_id(d) < LIVENESS_S
        # The garbage gets a 400 and a close, not silence.
        socks[2].settimeout(LIVENESS_S)
        assert socks[2].recv(100).startswith(b"HTTP/1.1 400")
    finally:
        for s in socks:
            s.close()
    hostile_worker.healthy()


def test_unpinning_what_is_not_pinned_is_a_one_line_error(hostile_worker: Target) -> None:
    d = hostile_worker.daemon
    cid = d.cli("add", "-Q", "--pin=false", str(_file(d.root, b"not pinned"))).stdout.strip()
    out = d.cli("pin", "rm", cid)
    assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
    assert "not pinned" in out.stderr and "Traceback" not in out.stderr
    hostile_worker.healthy()


def test_port_in_use_exits_2_naming_the_address(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        addr = f"/ip4/127.0.0.1/tcp/{taken.getsockname()[1]}"
        out = _daemon_run(tmp_path, "--listen", addr)
    assert out.returncode == 2, out.stderr[-2000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: cannot listen on " + addr) and "[node] listen" in last


def test_config_that_is_not_utf8_exits_2_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_bytes(b'[node]\ncluster = "caf\xe9"\n')
    out = _daemon_run(tmp_path, "--config", str(config))
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"Error: invalid configuration: {config}: (encoding): not UTF-8 text (byte 21, "
        "line 2): save the file as UTF-8"]


# -- helpers ---------------------------------------------------------------------------------


def _file(root: Path, data: bytes) -> Path:
    path = root / f"edge-{time.monotonic_ns()}"
    path.write_bytes(data)
    return path


def _daemon_run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN), "--role", "worker", "--repo", str(tmp_path / "repo"), *args],
        capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "IPFS_KIT_ROUTING_MDNS": "false"},
    )


class _Subscription:
    """`pubsub sub TOPIC` over the API in a thread: the messages, until closed."""

    def __init__(self, d: Daemon, topic: str) -> None:
        self.messages: list[dict[str, Any]] = []
        self._client = httpx.Client(transport=httpx.HTTPTransport(uds=str(d.repo / "api.sock")),
                                    base_url="http://x", timeout=httpx.Timeout(5, read=None))
        self._topic = topic
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._response: httpx.Response | None = None

    def _read(self) -> None:
        try:
            with self._client.stream("POST", "/api/v0/pubsub/sub",
                                     params={"arg": self._topic}) as response:
                self._response = response
                for line in response.iter_lines():
                    if line:
                        self.messages.append(json.loads(line))
        except (httpx.HTTPError, RuntimeError):
            pass  # closed under us: the test is done with it

    def __len__(self) -> int:
        return len(self.messages)

    def close(self) -> None:
        self._client.close()
        self._thread.join(LIVENESS_S)


@contextlib.contextmanager
def _subscription(d: Daemon, topic: str) -> Iterator[_Subscription]:
    sub = _Subscription(d, topic)
    sub._thread.start()
    try:
        yield sub
    finally:
        sub.close()
