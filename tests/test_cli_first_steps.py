"""What a new user hits first, through the real CLI and daemon: a listing piped into `head`,
the modes of files `get` writes, and `--repo` pointed at a Kubo repo."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import BIN, LOOPBACK, run_cli


def test_listing_into_head_ends_quietly(daemon: Any) -> None:
    """`pin ls | head -1`: the reader leaves early; as a Go CLI killed by SIGPIPE, nothing is
    printed on stderr (it said `Error: Broken pipe` and exited 1)."""
    d = daemon().start()
    many = d.root / "many"
    many.mkdir()
    for i in range(300):  # enough lines that the reader leaves before they are all written
        (many / f"f{i}").write_text(f"{i}\n")
    assert d.cli("add", "-r", "-Q", str(many)).returncode == 0
    for args in (("pin", "ls"), ("pin", "ls", "--type", "recursive"), ("ls", d.cli(
            "add", "-r", "-Q", str(many)).stdout.strip())):
        code, err = _pipe_into_head(d.repo, *args)
        assert err == "", (args, err)
        assert code == 0, args


def test_output_into_a_socket_whose_reader_left_ends_quietly(tmp_path: Path) -> None:
    """The same with stdout a socket (libuv's stdio pipes, as a Node parent's, are unix
    socket pairs): its reader leaving is no error either (it said `Error: Broken pipe`)."""
    ours, theirs = socket.socketpair()
    ours.close()  # the reader has left before a byte is written
    with theirs:
        proc = subprocess.Popen([str(BIN), "--repo", str(tmp_path), "config", "show"],
                                stdout=theirs, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    assert (proc.wait(60), err) == (0, "")


def _pipe_into_head(repo: Path, *args: str) -> tuple[int, str]:
    """Run the CLI with its stdout read for one line and then closed, as `| head -1`."""
    proc = subprocess.Popen([str(BIN), "--repo", str(repo), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    return proc.wait(60), err


def test_get_writes_files_with_the_umask(daemon: Any, tmp_path: Path) -> None:
    """Files `get` writes get 0666 less the umask (as Kubo's `ipfs get` and
    `Client().get`), not the 0600 of its temporary file; stored modes still win."""
    d = daemon().start()
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("a\n")
    (src / "sub" / "b.txt").write_text("b\n")
    root = d.cli("add", "-r", "-Q", str(src)).stdout.strip()
    one = d.cli("add", "-Q", str(src / "a.txt")).stdout.strip()
    old = os.umask(0o022)
    try:
        out = tmp_path / "out"
        assert d.cli("get", root, "-o", str(out)).returncode == 0
        assert d.cli("get", one, "-o", str(tmp_path / "one")).returncode == 0
    finally:
        os.umask(old)
    for path in (out / "a.txt", out / "sub" / "b.txt", tmp_path / "one"):
        assert path.stat().st_mode & 0o777 == 0o644, path
    os.chmod(src / "a.txt", 0o600)
    kept = d.cli("add", "-Q", "--preserve-mode", str(src / "a.txt")).stdout.strip()
    assert d.cli("get", kept, "-o", str(tmp_path / "kept")).returncode == 0
    assert (tmp_path / "kept").stat().st_mode & 0o777 == 0o600


def test_a_kubo_repo_is_refused(short_tmp: Path) -> None:
    """`--repo ~/.ipfs` (a Kubo repo: config, version, datastore_spec, blocks/, datastore/)
    fails the start with exit 2 and writes nothing into it: our packs in Kubo's blocks/
    and our index in its datastore/ would be a mess nobody could untangle."""
    kubo = short_tmp / "dot-ipfs"
    (kubo / "blocks").mkdir(parents=True)
    (kubo / "datastore").mkdir()
    (kubo / "config").write_text('{"Identity": {}}\n')
    (kubo / "version").write_text("15\n")
    (kubo / "datastore_spec").write_text("{}\n")
    before = sorted(p.relative_to(kubo) for p in kubo.rglob("*"))
    done = run_cli("--role", "worker", "--repo", str(kubo), "--listen", LOOPBACK, timeout=60,
                   env={"IPFS_KIT_API_LISTEN": "", "IPFS_KIT_GATEWAY_LISTEN": "",
                        "IPFS_KIT_ROUTING_MDNS": "false"})
    assert done.returncode == 2, done.stderr
    assert "Kubo" in done.stderr and "--repo" in done.stderr, done.stderr
    assert sorted(p.relative_to(kubo) for p in kubo.rglob("*")) == before


@pytest.fixture
def own_namespace() -> Iterator[str]:
    """A network namespace of the test's own: loopback and a veth pair (10.78.0.1/24 on one end),
    so a node listening on 0.0.0.0 is reachable from nowhere else (tests listen on loopback
    only) and has one non-loopback address the test knows."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("a network namespace needs root and iproute2")
    ns = f"ikn-id-{secrets.token_hex(3)}"

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)

    try:
        ip("netns", "add", ns)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot create a network namespace here: {exc.stderr.decode().strip()}")
    try:
        ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
        ip("-n", ns, "addr", "add", "10.78.0.1/24", "dev", "v0")
        for dev in ("v0", "v1"):
            ip("-n", ns, "link", "set", dev, "up")
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


def test_id_shows_dialable_addresses(daemon: Any, own_namespace: str) -> None:
    """A node listening on 0.0.0.0 (the default) shows its interfaces' addresses in `id`, as
    Kubo's `ipfs id` does: `/ip4/0.0.0.0/...` cannot be dialled from another host, and the
    same list goes to Kubo (`swarm connect` before a remote pin) and to a master as a task
    output's providers. Another node connects with the first one `id` prints. Both in a
    namespace of their own: a wildcard listener on the test machine would be reachable
    from its network."""
    inside = ("ip", "netns", "exec", own_namespace)
    a = daemon(name="a").start(listen="/ip4/0.0.0.0/tcp/0", prefix=inside)
    b = daemon(name="b").start(prefix=inside)
    addrs = a.api("id")["Addresses"]
    assert addrs and not [x for x in addrs if "/0.0.0.0/" in x], addrs
    assert addrs[0].startswith("/ip4/127.0.0.1/tcp/"), addrs
    assert not addrs[0].startswith("/ip4/127.0.0.1/tcp/0/"), addrs
    port = addrs[0].split("/")[4]
    assert f"/ip4/10.78.0.1/tcp/{port}/p2p/{a.peer_id}" in addrs, addrs
    assert a.api("status")["Addresses"] == addrs
    done = b.cli("swarm", "connect", addrs[0])
    assert done.returncode == 0, done.stderr
    assert a.peer_id in b.cli("swarm", "peers").stdout
