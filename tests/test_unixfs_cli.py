"""add / cat / get / ls through the daemon, as a Kubo user would run them."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import BIN, Daemon, memory_kib, run_cli

MakeDaemon = Callable[..., Daemon]


def tree(root: Path) -> Path:
    (root / "d" / "sub").mkdir(parents=True)
    (root / "d" / "a.txt").write_text("alpha\n")
    (root / "d" / "empty").write_bytes(b"")
    (root / "d" / "sub" / "big.bin").write_bytes(os.urandom(600_000))
    return root / "d"


def test_add_prints_kubo_lines_and_matches_only_hash(daemon: MakeDaemon, short_tmp: Path
                                                     ) -> None:
    d = daemon().start()
    folder = tree(short_tmp)
    offline = run_cli("add", "-r", "-n", str(folder), "--repo", str(short_tmp / "none"))
    assert offline.returncode == 0, offline.stderr  # --only-hash needs no daemon
    online = d.cli("add", "-r", str(folder))
    assert online.returncode == 0, online.stderr
    assert online.stdout == offline.stdout
    lines = [line.split(" ", 2) for line in online.stdout.splitlines()]
    assert [name for _, _, name in lines] == ["d/a.txt", "d/empty", "d/sub/big.bin", "d/sub",
                                               "d"]
    assert all(word == "added" and cid.startswith("Qm") for word, cid, _ in lines)
    root = lines[-1][1]
    assert d.api("pin/ls", {"type": "recursive"})["Keys"] == {root: {"Type": "recursive"}}

    listing = d.cli("ls", root).stdout.splitlines()
    assert [line.split()[-1] for line in listing] == ["a.txt", "empty", "sub/"]

    out = short_tmp / "out"
    got = d.cli("get", root, "-o", str(out))
    assert got.returncode == 0, got.stderr
    for f in folder.rglob("*"):
        twin = out / f.relative_to(folder)
        assert twin.is_dir() if f.is_dir() else twin.read_bytes() == f.read_bytes()


def test_add_options_and_profiles(daemon: MakeDaemon, short_tmp: Path) -> None:
    d = daemon().start()
    f = short_tmp / "f"
    f.write_bytes(os.urandom(3 * 1024 * 1024 + 11))
    v1 = d.cli("add", "-Q", "--profile", "unixfs-v1-2025", str(f)).stdout.strip()
    assert v1.startswith("bafybei")
    kubo_v1 = d.cli("add", "-Q", "--cid-version", "1", str(f)).stdout.strip()
    assert kubo_v1.startswith("bafybei") and kubo_v1 != v1  # 256 KiB chunks, raw leaves
    small = d.cli("add", "-Q", "--chunker", "size-1000", "--max-links", "3", str(f))
    assert small.returncode == 0 and small.stdout.strip().startswith("Qm")
    cdc = [d.cli("add", "-Q", "--chunker", spec, str(f)).stdout.strip()
           for spec in ("rabin", "rabin-100000-200000-300000", "buzhash")]
    assert len(set(cdc)) == 3
    assert cdc[0] == d.cli("add", "-Qn", "--chunker", "rabin", str(f)).stdout.strip()
    for cid in (v1, kubo_v1, small.stdout.strip(), *cdc):
        cat = subprocess.run([str(BIN), "cat", cid, "--repo", str(d.repo)], capture_output=True,
                             timeout=60)
        assert cat.returncode == 0 and cat.stdout == f.read_bytes()
    bad = d.cli("add", "--chunker", "rabin-10-20-30", str(f))
    assert bad.returncode == 2 and "rabin min must be greater than 16" in bad.stderr
    folder = d.cli("add", str(short_tmp))
    assert folder.returncode == 1 and "add it with -r" in folder.stderr


def test_add_without_pin_is_collectable(daemon: MakeDaemon, short_tmp: Path) -> None:
    d = daemon().start()
    f = short_tmp / "f"
    f.write_bytes(os.urandom(5000))
    cid = d.cli("add", "-Q", "--pin", "false", str(f)).stdout.strip()
    assert d.api("pin/ls")["Keys"] == {}
    d.cli("repo", "gc", "--full")
    missing = d.cli("cat", cid)
    assert missing.returncode == 1 and "not found" in missing.stderr


def test_cat_errors_are_clear(daemon: MakeDaemon, short_tmp: Path) -> None:
    d = daemon().start()
    folder = tree(short_tmp)
    root = d.cli("add", "-Q", "-r", str(folder)).stdout.strip()
    out = d.cli("cat", root)
    assert out.returncode == 1 and "is a directory" in out.stderr
    junk = short_tmp / "junk"
    junk.write_bytes(b"\xff\xff not dag-pb")
    cid = d.cli("block", "put", "--cid-codec", "dag-pb", str(junk)).stdout.strip()
    out = d.cli("cat", cid)
    assert out.returncode == 1 and f"malformed dag-pb block {cid}" in out.stderr



def _client_peak_kib(*args: str) -> tuple[int, bytes]:
    """Run the CLI; its exit status must be 0; return its peak RSS and a digest of stdout."""
    proc = subprocess.Popen([str(BIN), *args], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    digest = hashlib.sha256()
    while chunk := proc.stdout.read(1 << 20):
        digest.update(chunk)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0
    return usage.ru_maxrss, digest.digest()


@pytest.mark.slow
def test_one_gib_streams_in_bounded_memory(daemon: MakeDaemon, short_tmp: Path) -> None:
    d = daemon().start(env={"IPFS_KIT_STORAGE_MEMORY_SIZE": "8MiB"})
    assert d.proc is not None
    big = short_tmp / "big"
    digest = hashlib.sha256()
    with open(big, "wb") as f:
        for _ in range(1024):
            chunk = os.urandom(1 << 20)
            digest.update(chunk)
            f.write(chunk)
    small = short_tmp / "small"
    small.write_bytes(b"x")
    repo = ["--repo", str(d.repo)]
    client_base, _ = _client_peak_kib("add", "-Q", *repo, str(small))
    before = memory_kib(d.proc.pid, "VmRSS")

    client_add, _ = _client_peak_kib("add", "-Q", *repo, str(big))
    cid = d.cli("add", "-Q", "-n", str(big)).stdout.strip()
    client_cat, out_digest = _client_peak_kib("cat", cid, *repo)
    assert out_digest == digest.digest()

    daemon_growth = (memory_kib(d.proc.pid, "VmHWM") - before) / 1024
    print(f"daemon RSS growth {daemon_growth:.0f} MiB; client add peak +"
          f"{(client_add - client_base) / 1024:.0f} MiB, cat +"
          f"{(client_cat - client_base) / 1024:.0f} MiB")
    assert daemon_growth <= 64
    assert (client_add - client_base) / 1024 <= 64
    assert (client_cat - client_base) / 1024 <= 64


def test_get_reproduces_symlinks_metadata_and_shards(daemon: MakeDaemon, short_tmp: Path
                                                     ) -> None:
    """add --preserve-mode --preserve-mtime of a tree with symlinks and a HAMT-sharded folder;
    get writes it back: bytes, links (not followed), modes and mtimes."""
    d = daemon().start()
    src = short_tmp / "src"
    (src / "many").mkdir(parents=True)
    for i in range(1000):  # 1000 x (250 + 34) bytes of links: over 256 KiB, a HAMT
        (src / "many" / f"{i:0250d}").write_bytes(b"%d" % i)
    (src / "run.sh").write_bytes(b"#!/bin/sh\n")
    (src / "run.sh").chmod(0o751)
    os.utime(src / "run.sh", ns=(0, 1_700_000_000_123_456_789))
    (src / "link").symlink_to("run.sh")
    (src / "dangling").symlink_to("../elsewhere")
    os.utime(src / "many", ns=(0, 5 * 10**9))
    added = d.cli("add", "-r", "-Q", "--preserve-mode", "--preserve-mtime", str(src),
                  timeout=120)
    assert added.returncode == 0, added.stderr
    root = added.stdout.strip()
    listing = d.cli("ls", root).stdout.splitlines()
    assert any(line.endswith("link -> run.sh") for line in listing)
    links = {link["Name"]: link for link in d.api("ls", {"arg": root})["Objects"][0]["Links"]}
    assert (links["run.sh"]["Mode"], links["run.sh"]["Mtime"], links["run.sh"]["MtimeNsecs"]) \
        == ("0751", 1_700_000_000, 123_456_789)
    out = short_tmp / "out"
    got = d.cli("get", root, "-o", str(out), timeout=300)
    assert got.returncode == 0, got.stderr
    assert os.readlink(out / "link") == "run.sh" and os.readlink(out / "dangling") == \
        "../elsewhere"
    st = (out / "run.sh").stat()
    assert st.st_mode & 0o7777 == 0o751 and st.st_mtime_ns == 1_700_000_000_123_456_789
    assert (out / "many").stat().st_mtime_ns == 5 * 10**9
    assert sorted(p.name for p in (out / "many").iterdir()) == \
        sorted(p.name for p in (src / "many").iterdir())
    assert (out / "many" / f"{999:0250d}").read_bytes() == b"999"


def test_add_prints_no_line_for_blocks_the_daemon_did_not_store(daemon: MakeDaemon,
                                                                 short_tmp: Path) -> None:
    """An `added` line promises the blocks are stored: a store too small for the upload
    fails the add, and nothing is printed for it."""
    d = daemon().start(env={"IPFS_KIT_STORAGE_MAX_SIZE": "1MiB"})
    folder = short_tmp / "d"
    folder.mkdir()
    (folder / "small").write_bytes(b"fits")
    (folder / "big").write_bytes(os.urandom(4 << 20))
    out = d.cli("add", "-r", str(folder))
    assert out.returncode != 0
    assert "added" not in out.stdout, out.stdout
    assert "store full" in out.stderr.lower(), out.stderr
    assert d.api("id")["ID"] == d.peer_id


def test_output_is_whole_though_a_client_command_ends_at_once(daemon: MakeDaemon,
                                                              short_tmp: Path) -> None:
    """A client command's process ends without the interpreter's teardown (cli.run): what it
    printed into a pipe's buffer must still arrive whole, and its exit status stand."""
    d = daemon().start()
    folder = short_tmp / "many"
    folder.mkdir()
    for i in range(1500):  # ~90 KB of lines: many pipe buffers, the last one partly full
        (folder / f"f{i:04d}").write_bytes(b"%d" % i)
    offline = run_cli("add", "-r", "-n", str(folder), "--repo", str(short_tmp / "none"))
    online = d.cli("add", "-r", str(folder))
    assert online.returncode == offline.returncode == 0, online.stderr
    assert len(online.stdout.splitlines()) == 1501
    assert online.stdout == offline.stdout
    as_module = subprocess.run([sys.executable, "-m", "ipfs_kit_node", "ls", "--repo",
                                str(d.repo), online.stdout.split()[-2]],
                               capture_output=True, text=True, timeout=60)
    assert as_module.returncode == 0, as_module.stderr
    assert len(as_module.stdout.splitlines()) == 1500
    failed = subprocess.run([sys.executable, "-m", "ipfs_kit_node", "cat", "--repo",
                             str(d.repo), online.stdout.split()[-2]],
                            capture_output=True, text=True, timeout=60)
    assert failed.returncode == 1 and "is a directory" in failed.stderr
