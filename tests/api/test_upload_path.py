"""Uploads as clients send them: curl's ``Expect: 100-continue`` (curl waited 1 s for an
answer that never came, on every body over 1 MiB) and the CLI's put-many stream of big
blocks, each sent without being copied into a chunk."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import BIN, Daemon, run_cli

MakeDaemon = Callable[..., Daemon]


def cat(d: Daemon, cid: str) -> bytes:
    return subprocess.run([str(BIN), "cat", "--repo", str(d.repo), cid], capture_output=True,
                          timeout=60, check=True).stdout


def test_expect_100_continue_is_answered_before_the_body(daemon: MakeDaemon,
                                                         short_tmp: Path) -> None:
    d = daemon().start()
    data = os.urandom(300_000)
    (short_tmp / "f.bin").write_bytes(data)
    expected = run_cli("add", "-Q", "-n", str(short_tmp / "f.bin")).stdout.strip()
    body = (b"--zz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f.bin\"\r\n"
            b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n--zz--\r\n")
    host, port = d.rpc_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"POST /api/v0/add?quiet=true HTTP/1.1\r\nHost: x\r\n"
                     b"Expect: 100-continue\r\n"
                     b"Content-Type: multipart/form-data; boundary=zz\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
        early = b""
        while b"\r\n\r\n" not in early:  # before any byte of the body
            early += sock.recv(1)
        assert early.startswith(b"HTTP/1.1 100 "), early
        sock.sendall(body)
        answer = b""
        while b"\r\n0\r\n" not in answer:
            chunk = sock.recv(65536)
            assert chunk, answer
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 ") and expected.encode() in answer
    assert cat(d, expected) == data


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_upload_over_a_mib(daemon: MakeDaemon, short_tmp: Path) -> None:
    """curl itself (it sends Expect: 100-continue past 1 MiB), the CID as add -n gives it."""
    d = daemon().start()
    path = short_tmp / "big.bin"
    path.write_bytes(os.urandom(3 << 20))
    out = subprocess.run(["curl", "-sf", "-X", "POST", "-F", f"file=@{path}",
                          f"{d.rpc_url}/api/v0/add?quiet=true"],
                         capture_output=True, timeout=60, check=True).stdout
    assert run_cli("add", "-Q", "-n", str(path)).stdout.strip() in out.decode()


def test_cli_add_of_big_and_small_blocks(daemon: MakeDaemon, short_tmp: Path) -> None:
    """Big blocks go out as they are, small ones gathered: both arrive whole."""
    d = daemon().start()
    tree = short_tmp / "tree"
    tree.mkdir()
    files = {f"s{i}": os.urandom(i * 97) for i in range(1, 40)}
    files["big"] = os.urandom(3 * 262_144 + 12_345)
    for name, data in files.items():
        (tree / name).write_bytes(data)
    root = d.cli("add", "-r", "-Q", str(tree), timeout=60).stdout.strip()
    assert root == run_cli("add", "-r", "-Q", "-n", str(tree)).stdout.strip()
    for name in ("big", "s1", "s39"):
        cid = run_cli("add", "-Q", "-n", str(tree / name)).stdout.strip()
        assert cat(d, cid) == files[name]


def test_a_spooled_add_stays_on_the_store_disk_and_within_max_size(daemon: MakeDaemon,
                                                                     short_tmp: Path) -> None:
    """trickle (and rabin/buzhash) spool the file before chunking: the spool lives in the
    store's scratch folder (not $TMPDIR), and a file over storage.max_size is refused while
    it arrives; the daemon keeps answering and leaves no spool behind."""
    import httpx

    d = daemon().start(env={"IPFS_KIT_STORAGE_MAX_SIZE": "2MiB"})

    def add(data: bytes, name: str) -> httpx.Response:
        return httpx.post(f"{d.rpc_url}/api/v0/add", params={"trickle": "true"},
                          files={"file": (name, data)}, timeout=60)

    small = os.urandom(300_000)
    (short_tmp / "small").write_bytes(small)
    ok = add(small, "small")
    assert ok.status_code == 200, ok.text
    expected = run_cli("add", "-Q", "-n", "-t", str(short_tmp / "small")).stdout.strip()
    assert expected in ok.text
    # httpx drops trailers, where a stream that already began reports its error: read raw
    data = os.urandom(3 << 20)
    body = (b"--zz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big\"\r\n"
            b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n--zz--\r\n")
    host, port = d.rpc_url.removeprefix("http://").split(":")
    answer = b""
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"POST /api/v0/add?trickle=true HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: multipart/form-data; boundary=zz\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
        with contextlib.suppress(OSError):  # the server may stop reading once it refused
            sock.sendall(body)
        while b"\r\n\r\n" not in answer.partition(b"\r\n0\r\n")[2]:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert b"over storage.max_size" in answer, answer[-500:]
    assert d.api("id")["ID"] == d.peer_id
    assert not any((d.repo / "blocks" / ".tmp").iterdir())


def test_rpc_add_pins_every_block_it_made(daemon: MakeDaemon, short_tmp: Path) -> None:
    """The RPC add's pin walks the links it noted while importing (no block read back): the
    pin still counts every block, so a GC keeps them all and, once unpinned, takes them."""
    d = daemon().start()

    def objects() -> int:
        return int(json.loads(d.cli("repo", "stat", "--enc", "json").stdout)["NumObjects"])
    d.cli("repo", "gc", "--full")
    before = objects()
    data = os.urandom(5 * 262_144 + 7)  # CIDv0: dag-pb leaves under a dag-pb root
    path = short_tmp / "f.bin"
    path.write_bytes(data)
    body = (b"--zz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f.bin\"\r\n"
            b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n--zz--\r\n")
    host, port = d.rpc_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"POST /api/v0/add?quiet=true HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: multipart/form-data; boundary=zz\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        answer = b""
        while b"\r\n0\r\n" not in answer:
            chunk = sock.recv(65536)
            assert chunk, answer
            answer += chunk
    cid = run_cli("add", "-Q", "-n", str(path)).stdout.strip()
    assert cid.encode() in answer
    d.cli("repo", "gc", "--full")
    assert cat(d, cid) == data
    assert objects() == before + 7  # 6 leaves and the root
    d.cli("pin", "rm", cid)
    d.cli("repo", "gc", "--full")
    assert objects() == before
