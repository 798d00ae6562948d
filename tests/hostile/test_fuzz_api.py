"""A property-based fuzzer over the control API: every registered route with random methods,
arguments, headers and bodies, plus malformed HTTP on a raw socket. 5,000 requests in all.

Any status is a fine answer. Two things are not: the connection closing without an answer to
a well-formed request, and a 500 whose body is not Kubo's error JSON. Every 500 is kept with
its input in the report (a 500 is usually a bug even with the right body). At the end the
daemon must pass the health check (conftest.assert_healthy).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import h11
import httpx
import pytest
from helpers import Daemon
from hostile_kit import FuzzReport, IdProbe, Target, loop_figures
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from multiformats import CID, multihash

import ipfs_kit_node
from ipfs_kit_node.storage.frames import encode_frame

SRC = Path(ipfs_kit_node.__file__).parent
# Requests per part; 2 x 2,000 structured (worker, master) + 1,000 raw HTTP = 5,000.
# HOSTILE_FUZZ_SCALE (e.g. 0.1) shrinks every part for a quick local run.
SCALE = float(os.environ.get("HOSTILE_FUZZ_SCALE", "1"))
STRUCTURED_PER_ROLE = max(1, int(2000 * SCALE))
RAW_HTTP = max(1, int(1000 * SCALE))
ANSWER_TIMEOUT = 3.0  # per request; a route still working after this counts as "slow"
LONG_LIVED = {"/api/v0/pubsub/sub", "/api/v0/task/wait"}  # answers that stream or wait
# Routes that would stop or wreck the daemon on purpose (none exist today; keep the guard).
SKIP = re.compile(r"shutdown|/stop$|/kill$")
NOT_ROUTES = ["/", "/api/v0", "/api/v0/", "/api/v0/shutdown", "/api/v0/../api/v0/id",
              "/api/v0/id/", "/api/v0//id", "/metrics/", "/api/v1/id", "*", "/webui",
              "/api/v0/cat%00", "/api/v0/" + "x" * 5000]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "PROPFIND",
           "BREW"]


def registered_routes() -> list[tuple[str, str]]:
    """(method, path) of every ``router.add`` in the package, literal or from a route table
    (storage registers ``f"/api/v0/{path}"`` for each key of a dict)."""
    found: set[tuple[str, str]] = set()
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        for method, route in re.findall(r'router\.add\(\s*"([A-Z]+)",\s*"([^"{]+)"', text):
            found.add((method, route))
        for method, prefix in re.findall(r'router\.add\(\s*"([A-Z]+)",\s*f"([^"{]*)\{', text):
            for key in re.findall(r'"([a-z][a-z0-9/-]*)":\s*self\._\w+', text):
                found.add((method, prefix + key))
    return sorted(r for r in found if not SKIP.search(r[1]))


def param_names() -> list[str]:
    names = set()
    for path in SRC.rglob("*.py"):
        names.update(re.findall(r'request\.(?:arg|flag|require|cid)\(\s*"([^"]+)"',
                                path.read_text()))
    return sorted(names | {"arg"})


ROUTES = registered_routes()
PARAMS = param_names()


def _cid(data: bytes, codec: str = "raw", version: int = 1, hashfun: str = "sha2-256") -> str:
    base = "base58btc" if version == 0 else "base32"
    return str(CID(base, version, codec, multihash.digest(data, hashfun)))


# -- strategies ------------------------------------------------------------------------------

def huge_text() -> st.SearchStrategy[str]:
    """Up to ~100 KB, built by repetition (drawing 100 KB of text per example is slow)."""
    return st.builds(lambda s, n: (s * n)[:100_000], st.text(min_size=1, max_size=16),
                     st.integers(1_000, 100_000))


def cid_like(decoys: list[str], peer: str) -> st.SearchStrategy[str]:
    random_cids = st.builds(
        _cid, st.binary(max_size=64),
        st.sampled_from(["raw", "dag-pb", "dag-cbor", "dag-json", "libp2p-key"]),
        st.just(1), st.sampled_from(["sha2-256", "sha2-512", "blake2b-256", "identity"]))
    return st.one_of(
        st.sampled_from(decoys),
        st.builds(lambda c, p: f"/ipfs/{c}/{p}", st.sampled_from(decoys), st.text(max_size=40)),
        st.builds(lambda c: c[:-1], st.sampled_from(decoys)),  # truncated
        st.builds(lambda c: c.upper(), st.sampled_from(decoys)),
        st.builds(lambda b: str(CID("base32", 1, "raw", multihash.digest(b, "identity"))),
                  st.binary(max_size=4096)),  # the data inline in the CID
        st.builds(lambda d: _cid(d, "dag-pb", 0), st.binary(max_size=32)),
        random_cids,
        st.just(peer), st.just("12D3KooW" + "A" * 44), st.just("Qm" + "1" * 44),
        st.builds(lambda port: f"/ip4/127.0.0.1/tcp/{port}/p2p/{peer}",
                  st.integers(1, 65535)),
        st.sampled_from(["/ip4/127.0.0.1/tcp/1", "/ip4/127.0.0.1/udp/1/quic-v1", "/p2p/x",
                         "/ip6/::1/tcp/0", "/dns4/localhost/tcp/1"]),
    )


def arg_values(decoys: list[str], peer: str) -> st.SearchStrategy[str]:
    return st.one_of(
        # codec="utf-8": with only a minimum, hypothesis also draws lone surrogates, which no
        # client can send (httpx raised UnicodeEncodeError in the test, not the daemon).
        st.text(max_size=40),
        st.text(alphabet=st.characters(min_codepoint=0x80, codec="utf-8"), max_size=20),
        st.just(""), huge_text(), cid_like(decoys, peer), cid_like(decoys, peer),
        st.integers(-2**70, 2**70).map(str), st.floats().map(str),
        st.sampled_from(["true", "false", "1", "0", "yes", "nan", "inf", "-1", "1e308",
                         "0x10", "null", "None", "\x00", "../../etc/passwd"]),
    )


def json_docs() -> st.SearchStrategy[Any]:
    leaves = st.one_of(st.none(), st.booleans(), st.integers(-2**64, 2**64),
                       st.floats(allow_nan=False), st.text(max_size=30))
    return st.recursive(leaves, lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=10), inner, max_size=5)),
        max_leaves=40)


def task_bodies(decoys: list[str]) -> st.SearchStrategy[bytes]:
    handler = st.one_of(st.sampled_from(["noop", "sha256", "concat", "unixfs-stat"]),
                        st.text(max_size=300))
    task = st.fixed_dictionaries({"handler": handler}, optional={
        "inputs": st.lists(st.one_of(st.sampled_from(decoys), st.text(max_size=60)),
                           max_size=70),
        "params": st.dictionaries(st.text(max_size=20), st.one_of(
            st.text(max_size=50), st.integers(-2**60, 2**60), st.floats(), st.none(),
            st.lists(st.integers(), max_size=3)), max_size=10),
        "priority": st.one_of(st.integers(-2**70, 2**70), st.text(max_size=5)),
        "timeout": st.one_of(st.floats(), st.integers(-5, 10), st.text(max_size=5)),
        "task_id": st.text(max_size=300), "bogus": st.integers(),
    })
    return st.builds(lambda tasks: json.dumps({"tasks": tasks}).encode(),
                     st.lists(task, max_size=5))


def bodies(decoys: list[str]) -> st.SearchStrategy[bytes]:
    frames = st.lists(st.tuples(st.one_of(st.binary(max_size=40),
                                          st.sampled_from(decoys).map(lambda c: CID.decode(c)
                                                                      .__bytes__())),
                                st.binary(max_size=2000)), max_size=5)
    return st.one_of(
        st.just(b""), st.binary(max_size=4096),
        st.builds(lambda b, n: b * n, st.binary(min_size=1, max_size=64),
                  st.integers(1_000, 200_000)),  # up to ~12 MB
        json_docs().map(lambda d: json.dumps(d).encode()),
        st.integers(1, 200_000).map(lambda n: b"[" * n),  # nesting bombs
        st.integers(1, 100_000).map(lambda n: b'{"tasks":' + b"[" * n + b"]" * n + b"}"),
        st.integers(1, 50_000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
        task_bodies(decoys), task_bodies(decoys),
        frames.map(lambda fs: b"".join(encode_frame(c, d) for c, d in fs)),
        st.builds(lambda good, cut: good[:cut], frames.map(
            lambda fs: b"".join(encode_frame(c, d) for c, d in fs)), st.integers(0, 100)),
        st.binary(max_size=16).map(lambda b: b"\xff\xff\xff\xff\xff\x01" + b),
    )


HEADER_NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-ABCXYZ0123456789", min_size=1,
                      max_size=30)
HEADER_VALUE = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7e),
                       max_size=200)


def headers() -> st.SearchStrategy[dict[str, str]]:
    special = st.sampled_from([
        ("content-type", "multipart/form-data; boundary=xyz"),
        ("content-type", "application/json"), ("expect", "100-continue"),
        ("connection", "close"), ("connection", "keep-alive, upgrade"), ("upgrade", "h2c"),
        ("authorization", "Bearer " + "x" * 100), ("accept-encoding", "gzip"),
        ("x-forwarded-for", "10.0.0.1"), ("origin", "http://evil.example"),
    ])
    pair = st.one_of(special, st.tuples(HEADER_NAME, HEADER_VALUE))
    return st.one_of(st.just({}), st.just({}), st.just({}),
                     st.lists(pair, max_size=6).map(dict))


# -- one request -----------------------------------------------------------------------------

class Runner:
    """Sends requests, classifies answers into the report, remembers the last few inputs."""

    def __init__(self, daemon: Daemon, report: FuzzReport, part: str) -> None:
        self.daemon = daemon
        self.report = report
        self.part = part
        self.last: deque[dict[str, Any]] = deque(maxlen=5)
        self.client = self._client()
        self.slow: dict[str, int] = {}
        self.slowest: list[tuple[float, str, int, Any]] = []

    def _client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.HTTPTransport(uds=str(self.daemon.repo / "api.sock")),
                            base_url="http://ipfs-kit-node",
                            timeout=httpx.Timeout(ANSWER_TIMEOUT, connect=5.0))

    def close(self) -> None:
        self.client.close()

    def check_alive(self) -> None:
        proc = self.daemon.proc
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"daemon exited {proc.returncode} during the {self.part} fuzz; last "
                        f"inputs (newest last): {_short(list(self.last))}\n"
                        f"{self.daemon.log()[-3000:]}")

    def send(self, method: str, path: str, params: list[tuple[str, str]], body: bytes,
             hdrs: dict[str, str]) -> None:
        self.check_alive()
        record = {"method": method, "path": path, "params": params, "body": body,
                  "headers": hdrs}
        self.last.append(record)
        self.report.count(f"{self.part}:requests")
        timeout = 0.7 if path in LONG_LIVED else ANSWER_TIMEOUT
        started = time.monotonic()
        try:
            with self.client.stream(method, path, params=params, content=body, headers=hdrs,
                                    timeout=httpx.Timeout(timeout, connect=5.0)) as response:
                status = response.status_code
                content = _read_some(response, deadline=started + timeout)
        except httpx.ReadTimeout:
            self.report.count(f"{self.part}:no answer in {timeout} s")
            self.slow[path] = self.slow.get(path, 0) + 1
            self._fresh_client()
            return
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            self.check_alive()
            self._fresh_client()
            if not _sent_complete_request(exc):
                # the server hung up while we were still sending a huge body: an answer
                self.report.count(f"{self.part}:closed while sending")
                return
            # A keep-alive connection the previous request broke, or this request? Ask again
            # on a fresh connection to tell which.
            status, content = raw_request(self.daemon.repo / "api.sock", method, path, params,
                                          body, hdrs, timeout)
            if status is None:
                self.report.finding("connection dropped without an answer", error=str(exc),
                                    **_short(record))
                return
            previous = self.last[-2] if len(self.last) > 1 else None
            self.report.finding("connection broken by the request before", error=str(exc),
                                previous=_short(previous), this=_short(record))
        except (httpx.LocalProtocolError, httpx.InvalidURL):
            # httpx refuses URLs over 64 KiB and some headers: send those by hand.
            self.report.count(f"{self.part}:sent raw (httpx refused)")
            status, content = raw_request(self.daemon.repo / "api.sock", method, path, params,
                                          body, hdrs, timeout)
            if status is None:
                self.report.count(f"{self.part}:raw: {content.decode()}")
                return
        took = time.monotonic() - started
        self.report.count(f"{self.part}:status {status // 100}xx")
        if took >= 0.1:  # a candidate for a logged stall (steps over 100 ms are logged)
            self.slowest.append((round(took, 3), time.strftime("%H:%M:%S", time.gmtime()), status,
                                 _short(record)))
            self.slowest = sorted(self.slowest, key=lambda x: x[0], reverse=True)[:10]
        if status >= 500:
            kubo = _is_kubo_error(content)
            self.report.finding(str(status) if kubo else f"{status} without Kubo's error body",
                                answer=content[:300], **_short(record))

    def _fresh_client(self) -> None:
        self.client.close()
        self.client = self._client()


def raw_request(sock_path: Path, method: str, path: str, params: list[tuple[str, str]],
                body: bytes, hdrs: dict[str, str], timeout: float) -> tuple[int | None, bytes]:
    """One request written by hand (any length, any header): (status, body), or (None, how it
    ended) when no answer came."""
    target = path + ("?" + urlencode(params) if params else "")
    head = f"{method} {target} HTTP/1.1\r\nhost: x\r\ncontent-length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
    conn = h11.Connection(h11.CLIENT)
    status: int | None = None
    content = bytearray()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(sock_path))
        try:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                s.sendall(head.encode("utf-8", "surrogatepass") + body)  # may answer early
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(s.recv(65536))
                elif isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    content += event.data
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    break
        except TimeoutError:
            return (status, bytes(content)) if status else (None, b"timeout")
        except (ConnectionError, h11.RemoteProtocolError) as exc:
            return (status, bytes(content)) if status else (None, type(exc).__name__.encode())
    return status, bytes(content)


def _read_some(response: httpx.Response, deadline: float, limit: int = 1 << 20) -> bytes:
    """Up to ``limit`` bytes of the answer or what came before ``deadline`` (a subscription
    streams for ever)."""
    got = bytearray()
    for chunk in response.iter_bytes():
        got += chunk
        if len(got) >= limit or time.monotonic() > deadline:
            break
    return bytes(got)


def _sent_complete_request(exc: Exception) -> bool:
    """httpx says 'Server disconnected without sending a response' once the request is out."""
    return "without sending a response" in str(exc) or isinstance(exc, httpx.ReadError)


def _is_kubo_error(content: bytes) -> bool:
    try:
        doc = json.loads(content)
    except ValueError:
        return False
    return (isinstance(doc, dict) and isinstance(doc.get("Message"), str)
            and doc.get("Type") == "error" and "Code" in doc)


def _short(obj: Any) -> Any:
    """Inputs for the report, with long strings and bodies cut (their size kept)."""
    if isinstance(obj, bytes):
        return obj if len(obj) <= 200 else f"<{len(obj)} bytes: {obj[:80]!r}...>"
    if isinstance(obj, str):
        return obj if len(obj) <= 200 else f"<{len(obj)} chars: {obj[:80]!r}...>"
    if isinstance(obj, dict):
        return {k: _short(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_short(v) for v in obj]
    return obj


# -- fixtures --------------------------------------------------------------------------------

def decoys_for(d: Daemon, folder: Path) -> list[str]:
    """CIDs the fuzzer may name (and remove, unpin...): never the known file's."""
    out = []
    for i, size in enumerate((10, 3000, 300_000)):
        f = folder / f"decoy-{d.repo.name}-{i}"
        f.write_bytes(os.urandom(size))
        out.append(d.cli("add", "-Q", "--pin", "false", str(f)).stdout.strip())
    tree = folder / f"tree-{d.repo.name}"
    tree.mkdir(exist_ok=True)
    for i in range(5):
        (tree / f"f{i}").write_bytes(os.urandom(100))
    out.append(d.cli("add", "-Q", "-r", str(tree)).stdout.strip())
    f = folder / f"block-{d.repo.name}"
    f.write_bytes(os.urandom(100))
    out.append(d.cli("block", "put", str(f)).stdout.strip())
    out.append(_cid(b"absent"))
    assert all(out), out
    return out


def live_routes(d: Daemon) -> list[tuple[str, str]]:
    """The registered routes the daemon really serves (a route missing here is reported)."""
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(d.repo / "api.sock")),
                      base_url="http://x", timeout=10) as client:
        live = []
        for method, path in ROUTES:
            if path in LONG_LIVED:
                live.append((method, path))
                continue
            answer = client.request(method, path)
            if not (answer.status_code == 404 and b"no such command" in answer.content):
                live.append((method, path))
    return live


def run_structured(target: Target, report: FuzzReport, part: str, examples: int,
                   folder: Path) -> None:
    d = target.daemon
    decoys = decoys_for(d, folder)
    routes = live_routes(d)
    report.figures[f"{part}:routes"] = [f"{m} {p}" for m, p in routes]
    report.figures[f"{part}:routes registered but not served"] = sorted(
        f"{m} {p}" for m, p in set(ROUTES) - set(routes))
    runner = Runner(d, report, part)
    values = arg_values(decoys, d.peer_id)
    pairs = st.tuples(st.one_of(st.sampled_from(PARAMS), st.sampled_from(PARAMS),
                                st.text(max_size=20)), values)

    @settings(max_examples=examples, deadline=None, derandomize=False, database=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(route=st.one_of(st.sampled_from(routes), st.sampled_from(routes),
                           st.sampled_from(routes), st.sampled_from(routes),
                           st.tuples(st.sampled_from(METHODS), st.sampled_from(NOT_ROUTES))),
           other_method=st.one_of(st.none(), st.none(), st.none(), st.sampled_from(METHODS)),
           params=st.lists(pairs, max_size=4), body=bodies(decoys), hdrs=headers())
    def fuzz(route: tuple[str, str], other_method: str | None, params: list[tuple[str, str]],
             body: bytes, hdrs: dict[str, str]) -> None:
        method, path = route
        runner.send(other_method or method, path, params, body, hdrs)

    try:
        fuzz()
    finally:
        runner.close()
    if runner.slow:
        report.figures[f"{part}:no answer in time, by route"] = runner.slow
    report.figures[f"{part}:slowest answered requests (s, time, status, input)"] = runner.slowest


# -- the tests -------------------------------------------------------------------------------

def _fuzz_then_check(target: Target, report: FuzzReport, part: str,
                     run: Callable[[], None]) -> None:
    d = target.daemon
    log_start = len(d.log())
    report.figures["before"] = loop_figures(d)
    started = time.monotonic()
    with IdProbe(d) as probe:
        run()
    report.figures["seconds"] = round(time.monotonic() - started, 1)
    report.figures.update(probe.figures())
    report.stalls_logged(d, log_start)
    report.figures["pubsub topics left"] = d.api("pubsub/ls", timeout=10)["Strings"][:10]
    report.figures["after"] = target.healthy()
    dropped = [f for f in report.findings if f["kind"] in DROPPED or "without Kubo" in f["kind"]]
    assert not dropped, f"{len(dropped)} bad answers, first: {_short(dropped[0])}"


DROPPED = {"connection dropped without an answer", "connection broken by the request before"}


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")
@pytest.mark.parametrize("role", ["worker", "master"])
def test_routes_with_random_arguments_and_bodies(
        start_target: Callable[..., Target], role: str, fuzz_report: FuzzReport,
        tmp_path: Path) -> None:
    target = start_target(role, f"api-{role}")
    _fuzz_then_check(target, fuzz_report, role, lambda: run_structured(
        target, fuzz_report, role, STRUCTURED_PER_ROLE, tmp_path))


# -- malformed HTTP on the raw socket ----------------------------------------------------------

def raw_requests() -> st.SearchStrategy[tuple[str, bytes]]:
    """(kind, bytes) pairs: what a broken or hostile client could put on the socket."""
    path = st.sampled_from([p for _, p in ROUTES] + NOT_ROUTES)
    token = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=8)
    line = st.builds(lambda m, p, v: f"{m} {p} {v}\r\n".encode(), token, path,
                     st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/9", "", "XYZ"]))
    header_block = st.lists(st.builds(lambda n, v: n.encode() + b": " + v,
                                      HEADER_NAME, st.binary(max_size=100)), max_size=6)
    return st.one_of(
        st.tuples(st.just("garbage"), st.binary(max_size=2000)),
        st.tuples(st.just("bad line + headers"), st.builds(
            lambda lin, hs: lin + b"\r\n".join(hs) + b"\r\n\r\n", line, header_block)),
        st.tuples(st.just("huge header"), st.builds(
            lambda p, n: f"POST {p} HTTP/1.1\r\nhost: x\r\nx-big: {'a' * n}\r\n\r\n".encode(),
            path, st.integers(10_000, 200_000))),
        st.tuples(st.just("many headers"), st.builds(
            lambda p, n: (f"POST {p} HTTP/1.1\r\nhost: x\r\n"
                          + "".join(f"x-{i}: {i}\r\n" for i in range(n)) + "\r\n").encode(),
            path, st.integers(100, 5000))),
        st.tuples(st.just("short body"), st.builds(
            lambda p, n, b: (f"POST {p} HTTP/1.1\r\nhost: x\r\ncontent-length: {n}\r\n\r\n"
                             .encode() + b),
            path, st.integers(1, 10**12), st.binary(max_size=100))),
        st.tuples(st.just("bad chunked"), st.builds(
            lambda p, chunks: (f"POST {p} HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked"
                               "\r\n\r\n").encode() + chunks, path, st.one_of(
                st.binary(max_size=200), st.just(b"ffffffffffffffff\r\nabc"),
                st.just(b"5\r\nabc\r\n0\r\n\r\n"), st.just(b"-1\r\n\r\n"),
                st.just(b"0\r\nx-trailer: " + b"t" * 70000 + b"\r\n\r\n")))),
        st.tuples(st.just("pipelined"), st.builds(
            lambda p, n: f"POST {p} HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n".encode()
            * n, path, st.integers(2, 50))),
        st.tuples(st.just("smuggling"), st.builds(
            lambda p: (f"POST {p} HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n"
                       "transfer-encoding: chunked\r\n\r\n0\r\n\r\n").encode(), path)),
        st.tuples(st.just("no host"), path.map(
            lambda p: f"POST {p} HTTP/1.1\r\n\r\n".encode())),
    )


def raw_exchange(sock_path: Path, payload: bytes, timeout: float = 3.0) -> tuple[bytes, str]:
    """Send ``payload``, half-close, read until the server closes; (answer, how it ended)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(sock_path))
        try:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server gave up on us early: read what it said
        got = bytearray()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = s.recv(65536)
            except TimeoutError:
                return bytes(got), "timeout"
            except ConnectionResetError:
                return bytes(got), "reset"
            if not data:
                return bytes(got), "closed"
            got += data
        return bytes(got), "timeout"


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")
def test_malformed_http_on_the_raw_socket(hostile_worker: Target,
                                          fuzz_report: FuzzReport) -> None:
    d = hostile_worker.daemon
    sock_path = d.repo / "api.sock"
    last: deque[tuple[str, bytes]] = deque(maxlen=5)

    @settings(max_examples=RAW_HTTP, deadline=None, derandomize=False, database=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(request=raw_requests())
    def fuzz(request: tuple[str, bytes]) -> None:
        kind, payload = request
        last.append((kind, payload))
        proc = d.proc
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"daemon exited {proc.returncode}; last inputs: {_short(list(last))}")
        fuzz_report.count("raw:requests")
        answer, ending = raw_exchange(sock_path, payload)
        fuzz_report.count(f"raw:{'answered' if answer else 'no answer'} ({ending}): {kind}")
        if answer.startswith(b"HTTP/1.1 500"):
            body = answer.partition(b"\r\n\r\n")[2]
            fuzz_report.finding("500" if _is_kubo_error(body.split(b"\r\n")[-1] or body)
                                else "500 without Kubo's error body",
                                kind_of_input=kind, payload=_short(payload),
                                answer=answer[:300])
        if not answer:  # fine for garbage; worth a look for a request h11 could parse
            fuzz_report.finding(f"raw request not answered ({ending})", kind_of_input=kind,
                                payload=_short(payload))

    _fuzz_then_check(hostile_worker, fuzz_report, "raw", fuzz)
