"""``add`` of a local file by passing it open (its descriptor over the unix socket,
``/api/v0/add/fd``): the CLI's path for one regular file. The same CIDs as ``add -n`` and as
an upload, the root pinned, and every way a local client can get it wrong answered with a
400 that leaves the daemon answering and holding no descriptor it was sent."""

from __future__ import annotations

import array
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from helpers import BIN, Daemon, run_cli

MakeDaemon = Callable[..., Daemon]

OPTIONS = [[], ["--cid-version", "1"], ["--preserve-mode", "--preserve-mtime"], ["-t"],
           ["-s", "rabin"], ["--raw-leaves", "-s", "size-1000"], ["--hash", "blake3"],
           ["--mtime", "-5", "--mtime-nsecs", "7", "--inline"],  # before 1970: int64, as Kubo
           # CIDv1 means raw leaves, unless metadata is stored: the daemon applies that rule
           ["--cid-version", "1", "--preserve-mtime"], ["--cid-version", "1", "--mode", "640"]]


def cli(d: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN), *args, "--repo", str(d.repo)], capture_output=True,
                          text=True, timeout=120)


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def head_and_fd(sock: socket.socket, target: str, fds: list[int], *,
                wait_for_continue: bool = True, length: int = 1, read: bool = True) -> bytes:
    """A raw request to add/fd: the head, then (after the 100 Continue, unless told not to
    wait) one byte carrying ``fds``; returns the final answer (the 100, unless ``read``)."""
    head = (f"POST {target} HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()
    if not wait_for_continue:  # the byte right behind the head: read with it, fds dropped
        sock.sendmsg([head + b"\0"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                       array.array("i", fds))] if fds else [])
    else:
        sock.sendall(head)
        early = b""
        while b"\r\n\r\n" not in early:
            got = sock.recv(1)
            assert got, early
            early += got
        assert early.startswith(b"HTTP/1.1 100 "), early
        sock.sendmsg([b"\0"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                array.array("i", fds))] if fds else [])
        if not read:
            return early
    return read_answer(sock)


def read_answer(sock: socket.socket) -> bytes:
    """One whole answer: its head, then its content-length or chunked body."""
    answer = b""
    while True:
        head, sep, body = answer.partition(b"\r\n\r\n")
        if sep and head.startswith(b"HTTP/1.1 1"):  # an interim answer: the real one follows
            answer = body
            continue
        if sep:
            lines = head.lower().split(b"\r\n")
            length = next((int(line.split(b":")[1]) for line in lines
                           if line.startswith(b"content-length:")), None)
            if length is not None and len(body) >= length:
                return answer
            if length is None and body.endswith(b"\r\n0\r\n\r\n"):
                return answer
        chunk = sock.recv(65536)
        if not chunk:
            return answer
        answer += chunk


def connect(d: Daemon) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(60)
    sock.connect(str(d.repo / "api.sock"))
    return sock


def test_a_passed_file_gets_the_cids_of_add_n_and_is_pinned(daemon: MakeDaemon,
                                                             short_tmp: Path) -> None:
    d = daemon().start()
    data = os.urandom(3 * 1024 * 1024 + 12345)
    path = short_tmp / "f.bin"
    path.write_bytes(data)
    for options in OPTIONS:
        added = cli(d, "add", *options, str(path))
        assert added.returncode == 0, added.stderr
        expected = run_cli("add", "-n", *options, str(path)).stdout
        assert added.stdout == expected, options
        cid = expected.split()[1]
        assert cid in cli(d, "pin", "ls", "--type", "recursive").stdout
        cat = subprocess.run([str(BIN), "cat", "--repo", str(d.repo), cid],
                             capture_output=True, timeout=60, check=True).stdout
        assert cat == data, options
    # -q and -Q print as for an upload; a dot-file given by name is added, not skipped
    dot = short_tmp / ".env"
    dot.write_bytes(b"SECRET=1\n")
    for flag in ("-q", "-Q"):
        assert cli(d, "add", flag, str(dot)).stdout == run_cli("add", "-n", flag,
                                                                str(dot)).stdout
    # --pin false: stored, not pinned
    other = short_tmp / "g.bin"
    other.write_bytes(os.urandom(70_000))
    unpinned = cli(d, "add", "-Q", "--pin", "false", str(other)).stdout.strip()
    assert unpinned and unpinned not in cli(d, "pin", "ls").stdout
    assert cli(d, "block", "stat", unpinned).returncode == 0
    # options the daemon refuses: the importer's own words, nothing added, as add -n says
    for options, words in ((["--cid-version", "0", "--hash", "blake3"], "CIDv0 only"),
                           (["--raw-leaves", "--preserve-mode"], "--raw-leaves can't"),
                           (["--mtime-nsecs", "5"], "needs --mtime")):
        refused = cli(d, "add", *options, str(other))
        assert refused.returncode != 0 and words in refused.stderr, (options, refused)
        assert words in run_cli("add", "-n", *options, str(other)).stderr


def test_the_same_file_uploaded_and_passed_is_one_dag(daemon: MakeDaemon,
                                                      short_tmp: Path) -> None:
    """--max-links 174 (Kubo's own value) keeps the CLI on the upload path."""
    d = daemon().start()
    path = short_tmp / "f.bin"
    path.write_bytes(os.urandom(1_000_000))
    passed = cli(d, "add", "-Q", str(path)).stdout
    uploaded = cli(d, "add", "-Q", "--max-links", "174", str(path)).stdout
    assert passed == uploaded and passed.strip()


def test_what_a_local_client_gets_wrong_is_a_400(daemon: MakeDaemon, short_tmp: Path) -> None:
    d = daemon().start()
    pid = d.proc.pid
    path = short_tmp / "f.bin"
    path.write_bytes(os.urandom(10_000))
    before = open_fds(pid)
    target = "/api/v0/add/fd?name=f.bin"
    read_end, write_end = os.pipe()
    folder = os.open(short_tmp, os.O_RDONLY | os.O_DIRECTORY)
    f1, f2 = os.open(path, os.O_RDONLY), os.open(path, os.O_RDONLY)
    # open but not for reading: refused before the 200 (pread failed after it, mid-stream)
    write_only, o_path = os.open(path, os.O_WRONLY), os.open(path, os.O_PATH)
    try:
        cases = {
            "a pipe": ([read_end], {}),
            "a folder": ([folder], {}),
            "a file open for writing only": ([write_only], {}),
            "an O_PATH descriptor": ([o_path], {}),
            "no descriptor": ([], {}),
            "two descriptors": ([f1, f2], {}),
            "the byte sent before the 100 Continue": ([f1], {"wait_for_continue": False}),
            "a body of two bytes": ([f1], {"length": 2}),
        }
        for case, (fds, how) in cases.items():
            with connect(d) as sock:
                answer = head_and_fd(sock, target, fds, **how)  # type: ignore[arg-type]
            assert answer.startswith(b"HTTP/1.1 400 "), (case, answer[:300])
            assert b"Message" in answer, case
        with connect(d) as sock:  # a bad option: refused before any descriptor is taken
            answer = head_and_fd(sock, "/api/v0/add/fd?cid-version=7", [f1])
        assert answer.startswith(b"HTTP/1.1 400 "), answer[:300]
        with connect(d) as sock:  # a name with a slash would file the file in a folder
            answer = head_and_fd(sock, "/api/v0/add/fd?name=a%2Fb", [f1])
        assert answer.startswith(b"HTTP/1.1 400 "), answer[:300]
    finally:
        for fd in (read_end, write_end, folder, f1, f2, write_only, o_path):
            os.close(fd)
    # every descriptor sent was closed by the daemon (or dropped by the kernel)
    deadline = time.monotonic() + 20
    while open_fds(pid) > before + 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert open_fds(pid) <= before + 2, (before, os.listdir(f"/proc/{pid}/fd"))
    assert cli(d, "id").returncode == 0
    assert cli(d, "add", "-Q", str(path)).stdout.strip()  # and it still adds


def test_add_fd_over_tcp_is_refused(daemon: MakeDaemon) -> None:
    """No descriptor can cross TCP: the Kubo RPC listener says to upload instead."""
    import httpx

    d = daemon().start()
    answer = httpx.post(f"{d.rpc_url}/api/v0/add/fd", content=b"\0", timeout=30)
    assert answer.status_code == 400
    assert "unix socket" in json.loads(answer.content)["Message"]


def test_a_client_gone_mid_add_leaves_nothing_open(daemon: MakeDaemon,
                                                   short_tmp: Path) -> None:
    d = daemon().start()
    pid = d.proc.pid
    path = short_tmp / "big.bin"
    with open(path, "wb") as out:
        for _ in range(64):
            out.write(os.urandom(1 << 20))
    before = open_fds(pid)
    for _ in range(3):
        proc = subprocess.Popen([str(BIN), "add", "-Q", "--repo", str(d.repo), str(path)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.15)
        proc.kill()
        proc.wait(30)
    deadline = time.monotonic() + 30
    while open_fds(pid) > before + 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert open_fds(pid) <= before + 2
    assert cli(d, "add", "-Q", str(path)).stdout.strip() == \
        run_cli("add", "-Q", "-n", str(path)).stdout.strip()


def test_a_symlink_given_by_path_is_added_as_by_an_upload(daemon: MakeDaemon,
                                                          short_tmp: Path) -> None:
    """A symlink is never passed open (that would add its target): the upload path adds it
    as ``add -n`` does."""
    d = daemon().start()
    target = short_tmp / "t.bin"
    target.write_bytes(b"x" * 5000)
    path = short_tmp / "p"
    path.symlink_to(target)
    assert cli(d, "add", "-Q", str(path)).stdout == run_cli("add", "-Q", "-n", str(path)).stdout


def test_the_python_client_passes_a_file_too(daemon: MakeDaemon, short_tmp: Path) -> None:
    from ipfs_kit_node.client import Client

    d = daemon().start()
    path = short_tmp / "f.bin"
    data = os.urandom(600_000)
    path.write_bytes(data)
    before = len(cli(d, "pin", "ls", "--type", "recursive").stdout.split())
    with Client(repo=d.repo) as client:
        for options in ({}, {"cid_version": 1}, {"chunker": "size-1000", "raw_leaves": False}):
            cid = client.add(path, **options)
            assert cid == client.add(data, **options)  # bytes are uploaded: the same DAG
            assert client.cat(cid) == data
            flags = [f"--{k.replace('_', '-')}" + ("" if v is True else f"={v}".lower())
                     for k, v in options.items()]
            assert cid == run_cli("add", "-Q", "-n", *flags, str(path)).stdout.strip()
        assert client.add(path, pin=False) == client.add(data, pin=False)
    assert len(cli(d, "pin", "ls", "--type", "recursive").stdout.split()) > before


def _open_on(pid: int, path: Path) -> bool:
    """Whether process ``pid`` holds ``path`` open."""
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == str(path):
                return True
        except OSError:
            pass
    return False


def test_a_client_gone_without_progress_lines_stops_the_add(daemon: MakeDaemon,
                                                            short_tmp: Path) -> None:
    """Without ``progress`` nothing is written before the file's line, so only watching the
    socket tells that the client left: a 64 GiB sparse file was read on for minutes. A client
    that leaves right after sending the descriptor (the answer's head then fails) leaves no
    descriptor open either."""
    d = daemon().start()
    pid = d.proc.pid
    path = short_tmp / "sparse.bin"
    with open(path, "wb") as out:
        out.truncate(64 << 30)
    fd = os.open(path, os.O_RDONLY)
    try:
        with connect(d) as sock:
            answer = head_and_fd(sock, "/api/v0/add/fd?name=s&progress=false", [fd],
                                 read=False)
            assert answer.startswith(b"HTTP/1.1 100 "), answer
            head = sock.recv(65536)
            assert head.startswith(b"HTTP/1.1 200 "), head
            assert _open_on(pid, path)
        deadline = time.monotonic() + 20
        while _open_on(pid, path) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _open_on(pid, path)
        small = short_tmp / "s.bin"
        small.write_bytes(os.urandom(100_000))
        before = open_fds(pid)
        with open(small, "rb") as f:
            for _ in range(10):
                with connect(d) as sock:
                    head_and_fd(sock, "/api/v0/add/fd?name=s", [f.fileno()], read=False)
        deadline = time.monotonic() + 20
        while open_fds(pid) > before + 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert open_fds(pid) <= before + 2, os.listdir(f"/proc/{pid}/fd")
    finally:
        os.close(fd)
    assert cli(d, "add", "-Q", str(small)).stdout.strip()


def test_a_refused_request_waiting_for_100_continue_is_answered_at_once(
        daemon: MakeDaemon) -> None:
    """An unknown route (an older daemon's answer to add/fd) read the body no client sends
    before the 100 Continue: it closed the connection unanswered after 60 s."""
    d = daemon().start()
    with connect(d) as sock:
        sock.settimeout(30)
        sock.sendall(b"POST /api/v0/add/nothere HTTP/1.1\r\nHost: x\r\n"
                     b"Expect: 100-continue\r\nContent-Length: 1\r\n\r\n")
        answer = read_answer(sock)
        assert answer.startswith(b"HTTP/1.1 404 "), answer[:300]
        assert sock.recv(10) == b""  # closed: the body it may still send is not read
    assert cli(d, "id").returncode == 0


def _older_daemon(sock_path: Path) -> tuple[threading.Thread, socket.socket,
                                             list[tuple[bytes, list[Any]]]]:
    """A stand-in for a daemon without add/fd (no such daemon can run here): it reads the
    head and waits for a body, as older daemons did. (thread, server, what it received:
    bytes and ancillary data per read)."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sock_path))
    server.listen(1)
    got: list[tuple[bytes, list[Any]]] = []

    def serve() -> None:
        conn, _ = server.accept()
        conn.settimeout(30)
        with conn:
            while True:
                data, ancillary, _, _ = conn.recvmsg(65536, socket.CMSG_SPACE(64))
                got.append((data, ancillary))
                if not data:
                    return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread, server, got


def test_a_daemon_that_sends_no_100_continue_gets_the_upload(short_tmp: Path,
                                                             monkeypatch: Any) -> None:
    """The older daemon (``_older_daemon``): ``add_passed`` gives up after
    CONTINUE_WAIT, having sent neither the byte nor the descriptor (the caller uploads)."""
    from ipfs_kit_node.client import Client, _http
    from ipfs_kit_node.client._sync import add_passed

    monkeypatch.setattr(_http, "CONTINUE_WAIT", 0.5)
    sock_path = short_tmp / "old.sock"
    thread, server, got = _older_daemon(sock_path)
    path = short_tmp / "f.bin"
    path.write_bytes(b"x" * 1000)
    with Client(sock_path) as client:
        assert add_passed(client, path, {}) is None
    thread.join(30)
    server.close()
    sent = b"".join(data for data, _ in got)
    assert sent.startswith(b"POST /api/v0/add/fd?") and sent.endswith(b"\r\n\r\n")
    assert not any(ancillary for _, ancillary in got)


def test_a_client_kept_across_a_daemon_restart_passes_a_file(daemon: MakeDaemon,
                                                             short_tmp: Path) -> None:
    """Two adds by path share one kept-alive connection; a pooled connection the daemon
    closed (here by restarting) is replaced, as for any other request (it raised
    BrokenPipeError)."""
    from ipfs_kit_node.client import Client

    d = daemon().start()
    one, two = short_tmp / "1.bin", short_tmp / "2.bin"
    one.write_bytes(os.urandom(300_000))
    two.write_bytes(os.urandom(300_000))
    with Client(repo=d.repo) as client:
        first = client.add(one)
        kept = list(client._pool._idle)
        assert len(kept) == 1
        assert client.add(two) == run_cli("add", "-Q", "-n", str(two)).stdout.strip()
        assert client._pool._idle == kept  # the same connection, reused
        d.stop()
        d.start()
        assert client.add(one) == first
        assert client.cat(first) == one.read_bytes()


def test_the_route_takes_trickle_and_rabin_too(daemon: MakeDaemon, short_tmp: Path) -> None:
    """The CLI and Client upload for these (the daemon would spool the file and import it
    in silence), but the route itself gives add -n's CIDs."""
    d = daemon().start()
    path = short_tmp / "f.bin"
    path.write_bytes(os.urandom(700_000))
    for query, flags in (("trickle=true", ["-t"]), ("chunker=rabin", ["-s", "rabin"])):
        with open(path, "rb") as f, connect(d) as sock:
            answer = head_and_fd(sock, f"/api/v0/add/fd?name=f.bin&{query}", [f.fileno()])
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:300]
        expected = run_cli("add", "-Q", "-n", *flags, str(path)).stdout.strip()
        assert f'"Hash": "{expected}"'.encode() in answer, (query, answer[-300:])


def test_descriptors_sent_to_any_other_route_are_dropped(daemon: MakeDaemon,
                                                         short_tmp: Path) -> None:
    """Only add/fd reads with recvmsg: a body (or a head) read by a plain recv makes the
    kernel close the descriptors riding on it, so no route can be made to hold them."""
    d = daemon().start()
    pid = d.proc.pid
    path = short_tmp / "f.bin"
    path.write_bytes(b"x" * 1000)
    fds = [os.open(path, os.O_RDONLY) for _ in range(8)]
    body = (b'--b\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n'
            b"Content-Type: application/octet-stream\r\n\r\nhello\r\n--b--\r\n")
    head = ("POST /api/v0/add HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
            f"boundary=b\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
    before = open_fds(pid)
    try:
        for _ in range(10):
            with connect(d) as sock:
                sock.sendmsg([head[:20]], rights)  # with the head
                sock.sendall(head[20:])
                time.sleep(0.02)
                sock.sendmsg([body], rights)  # with the body of a streaming route
                assert read_answer(sock).startswith(b"HTTP/1.1 200 ")
    finally:
        for fd in fds:
            os.close(fd)
    time.sleep(0.5)
    assert open_fds(pid) <= before + 2, os.listdir(f"/proc/{pid}/fd")


def test_the_async_client_passes_a_file_under_trio_and_asyncio(
        daemon: MakeDaemon, short_tmp: Path, monkeypatch: Any) -> None:
    """AsyncClient.add(path) passes the file open too (the upload path, refused here, is
    never taken), with the CIDs of add -n; under an old daemon it uploads."""
    import asyncio

    import trio

    from ipfs_kit_node.client import AsyncClient, _ahttp, _async

    d = daemon().start()
    path = short_tmp / "f.bin"
    data = os.urandom(600_000)
    path.write_bytes(data)
    sets: list[dict[str, Any]] = [{}, {"cid_version": 1},
                                  {"chunker": "size-1000", "raw_leaves": False}]
    expected = []
    for options in sets:
        flags = [f"--{k.replace('_', '-')}" + ("" if v is True else f"={v}".lower())
                 for k, v in options.items()]
        expected.append(run_cli("add", "-Q", "-n", *flags, str(path)).stdout.strip())

    def no_upload(*args: Any, **kw: Any) -> Any:
        raise AssertionError("the file was uploaded, not passed open")

    async def passed() -> None:
        async with AsyncClient(repo=d.repo) as client:
            for options, cid in zip(sets, expected, strict=True):
                assert await client.add(path, **options) == cid
                assert await client.cat(cid) == data
            assert await client.add(path, pin=False) == expected[0]

    with monkeypatch.context() as patch:
        patch.setattr(_async, "_import_items", no_upload)
        trio.run(passed)
        asyncio.run(passed())

    # A stand-in older daemon (reads the head, waits for a body): no 100 Continue, so no
    # descriptor is sent and the caller is told to upload.
    monkeypatch.setattr(_ahttp, "CONTINUE_WAIT", 0.5)
    sock_path = short_tmp / "old.sock"
    thread, server, got = _older_daemon(sock_path)

    async def old() -> None:
        async with AsyncClient(sock_path) as client:
            assert await client._add_passed(path, {}, pin=True, name="") is None

    trio.run(old)
    thread.join(30)
    server.close()
    assert not any(ancillary for _, ancillary in got)


def _reset_after_taking_fd(sock_path: Path) -> tuple[threading.Thread, list[int]]:
    """A stand-in daemon (a mock: a real one cannot be made to fail this way on cue). Its
    first connection answers one request (kept alive), then takes an add/fd head, sends
    100 Continue and closes without reading the descriptor's byte: the client's read gets
    ECONNRESET after its descriptor went. Any further connection counts the descriptors it
    is sent (there must be none: a retry would pass the file twice)."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sock_path))
    server.listen(2)
    server.settimeout(5)
    resent: list[int] = []

    def head(conn: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
        return data

    def serve() -> None:
        with server:
            conn, _ = server.accept()
            conn.settimeout(10)
            with conn:
                head(conn)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 2\r\n\r\n{}")
                head(conn)
                conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                time.sleep(0.5)  # the byte and its descriptor arrive, unread
            server.settimeout(1)  # a retry comes at once
            try:
                again, _ = server.accept()
            except TimeoutError:
                return
            again.settimeout(10)
            with again:
                head(again)
                again.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                _, ancillary, _, _ = again.recvmsg(16, socket.CMSG_SPACE(64))
                for _, _, fds in ancillary:
                    resent.extend(array.array("i", fds[:len(fds) - len(fds) % 4]))
                for fd in resent:
                    os.close(fd)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread, resent


def test_a_connection_broken_after_the_descriptor_went_is_not_retried(short_tmp: Path
                                                                      ) -> None:
    """A kept-alive connection that breaks after a request_fd sent its descriptor is an
    error, not a stale connection retried anew: the daemon may have the file already
    (the sync and the async client)."""
    import pytest
    import trio

    from ipfs_kit_node.client import AsyncClient, Client
    from ipfs_kit_node.client._sync import add_passed
    from ipfs_kit_node.errors import ApiError

    path = short_tmp / "f.bin"
    path.write_bytes(b"x" * 1000)
    sock_path = short_tmp / "reset.sock"
    thread, resent = _reset_after_taking_fd(sock_path)
    with Client(sock_path) as client:
        client.call("version")
        with pytest.raises(ApiError):
            add_passed(client, path, {})
    thread.join(30)
    assert not resent, "the descriptor was sent again on a new connection"

    sock_path.unlink()
    thread, resent = _reset_after_taking_fd(sock_path)

    async def main() -> None:
        async with AsyncClient(sock_path) as client:
            await client.call("version")
            with pytest.raises(ApiError):
                await client._add_passed(path, {}, pin=True, name="")

    trio.run(main)
    thread.join(30)
    assert not resent, "the async client sent the descriptor again on a new connection"


def test_an_add_that_fails_part_way_closes_the_file_it_was_passed(daemon: MakeDaemon,
                                                                   short_tmp: Path) -> None:
    """The store refusing a block (full of pinned data) fails the add while the next 4 MiB
    are being read ahead: the answer is a clear error and the daemon lets go of the file
    once that read is over (nothing left open), still answering."""
    d = daemon().start(env={"IPFS_KIT_STORAGE_MAX_SIZE": "3MiB"})
    assert d.proc is not None
    path = short_tmp / "big.bin"
    path.write_bytes(os.urandom(24 << 20))
    out = cli(d, "add", "-Q", str(path))
    # the error reaches the CLI in the stream's trailer, as Kubo's RPC sends it
    assert out.returncode != 0 and "full" in out.stderr, out.stderr
    assert "full" in d.log(), d.log()[-3000:]
    deadline = time.monotonic() + 30
    while _open_on(d.proc.pid, path) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _open_on(d.proc.pid, path)
    small = short_tmp / "small.bin"
    small.write_bytes(b"y" * 1000)
    assert cli(d, "add", "-Q", "--pin", "false", str(small)).returncode == 0
