"""Hostile DAGs through a real daemon and the real command line: deep chains, deep HAMTs,
lying sizes, huge folders, symlinks, and folder entries that try to write outside `get`'s
target. Each case gives a one-line error (never a traceback) and leaves the daemon healthy."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from dag import raw_block
from helpers import BIN, Daemon, cat
from multiformats import CID, multihash

from ipfs_kit_node.client import Client
from ipfs_kit_node.codecs import dagpb
from ipfs_kit_node.storage.frames import encode_frame
from ipfs_kit_node.unixfs import data as fs
from ipfs_kit_node.unixfs.exporter import MAX_DEPTH, MAX_HAMT_DEPTH

MakeDaemon = Callable[..., Daemon]
Blocks = list[tuple[CID, bytes]]
LIVENESS_S = 10.0


def pb_node(links: Iterable[tuple[CID, str | None, int]], unixfs: fs.UnixFSData
            ) -> tuple[CID, bytes]:
    body = dagpb.encode([dagpb.PBLink(c, n, s) for c, n, s in links], unixfs.encode())
    return CID("base32", 1, "dag-pb", multihash.digest(body, "sha2-256")), body


def folder(entries: Iterable[tuple[str, CID, int]]) -> tuple[CID, bytes]:
    return pb_node([(c, name, size) for name, c, size in entries], fs.UnixFSData(fs.DIRECTORY))


def symlink(target: bytes) -> tuple[CID, bytes]:
    return pb_node([], fs.UnixFSData(fs.SYMLINK, target))


def put_many(d: Daemon, blocks: Blocks) -> None:
    body = b"".join(encode_frame(bytes(c), data) for c, data in blocks)
    with Client(d.repo / "api.sock", repo=d.repo, timeout=120) as client:
        client.call("block/put-many", {}, body=body)


def one_line_error(proc: object, *needles: str) -> str:
    """The command failed with exit 1 and one line on stderr holding every needle."""
    code, err = proc.returncode, proc.stderr  # type: ignore[attr-defined]
    text = err.decode(errors="replace") if isinstance(err, bytes) else err
    assert code == 1, (code, text)
    assert "Traceback" not in text and len(text.strip().splitlines()) == 1, text
    for needle in needles:
        assert needle in text, text
    return text


@pytest.fixture
def node(daemon: MakeDaemon, short_tmp: Path) -> tuple[Daemon, str, bytes]:
    """A worker holding a known file (that must still read back after every case)."""
    d = daemon().start()
    data = os.urandom(300_000)
    known = short_tmp / "known.bin"
    known.write_bytes(data)
    cid = d.cli("add", "-Q", str(known)).stdout.strip()
    return d, cid, data


def assert_healthy(d: Daemon, known: str, data: bytes) -> None:
    assert d.proc is not None and d.proc.poll() is None, d.log()[-3000:]
    started = time.monotonic()
    d.api("id", timeout=LIVENESS_S)
    assert time.monotonic() - started < LIVENESS_S
    assert cat(d, known) == data


def file_chain(depth: int, content: bytes) -> tuple[CID, Blocks]:
    cid, data = raw_block(content)
    blocks = [(cid, data)]
    for _ in range(depth):
        cid, data = pb_node([(cid, None, len(content))],
                            fs.UnixFSData(fs.FILE, filesize=len(content),
                                          blocksizes=(len(content),)))
        blocks.append((cid, data))
    return cid, blocks


def test_deep_file_chain(node: tuple[Daemon, str, bytes]) -> None:
    """5,000 one-link levels: was a RecursionError (the process exited 1, or a misleading
    "link hash is not a CID" error); now a clear error naming where the walk stopped."""
    d, known, data = node
    deep, blocks = file_chain(5000, b"hello")
    allowed, more = file_chain(MAX_DEPTH - 1, b"deep but allowed")
    put_many(d, blocks + more)
    one_line_error(d.cli("cat", str(deep), timeout=120),
                   f"over {MAX_DEPTH} levels deep at bafy", "hostile or broken DAG")
    ok = d.cli("cat", str(allowed), timeout=120)
    assert ok.returncode == 0 and ok.stdout == "deep but allowed", ok.stderr
    assert_healthy(d, known, data)


def test_deep_hamt_shard_chain(node: tuple[Daemon, str, bytes]) -> None:
    d, known, data = node
    leaf, leaf_data = raw_block(b"entry")
    shard = fs.UnixFSData(fs.HAMT_SHARD, data=b"\x01", hash_type=0x22, fanout=256)
    cid, body = pb_node([(leaf, "00file", 5)], shard)
    blocks = [(leaf, leaf_data), (cid, body)]
    for _ in range(MAX_HAMT_DEPTH + 100):
        cid, body = pb_node([(cid, "00", 0)], shard)
        blocks.append((cid, body))
    put_many(d, blocks)
    one_line_error(d.cli("ls", str(cid), timeout=120), "shards deep")
    assert_healthy(d, known, data)


def test_lying_sizes_are_clear_errors(node: tuple[Daemon, str, bytes]) -> None:
    """A node claiming 1 TB for 5 bytes was listed as 1 TB; one claiming 5 bytes gave 200."""
    d, known, data = node
    five, five_data = raw_block(b"12345")
    big, big_data = raw_block(b"x" * 200)
    tb, tb_data = pb_node([], fs.UnixFSData(fs.FILE, b"hello", filesize=10**12))
    short, short_data = pb_node([(big, None, 5)],
                                fs.UnixFSData(fs.FILE, filesize=5, blocksizes=(5,)))
    inner, inner_data = pb_node([(big, None, 5)],
                                fs.UnixFSData(fs.FILE, filesize=5, blocksizes=(5,)))
    two, two_data = pb_node([(five, None, 5), (inner, None, 5)],
                            fs.UnixFSData(fs.FILE, filesize=10, blocksizes=(5, 5)))
    top, top_data = folder([("huge", tb, 10)])
    put_many(d, [(five, five_data), (big, big_data), (tb, tb_data), (short, short_data),
                 (inner, inner_data), (two, two_data), (top, top_data)])

    one_line_error(d.cli("ls", str(top)), str(tb), "declares 1000000000000 bytes but holds 5")
    one_line_error(d.cli("cat", str(tb)), str(tb))
    with pytest.raises(Exception, match=str(tb)):
        d.api("unixfs/stat", {"arg": str(tb)})
    short_cat = d.cli("cat", str(short))
    one_line_error(short_cat, f"child {big} holds 5 bytes, but the child holds 200")
    assert short_cat.stdout == ""
    # The lie is found after the first bytes went out: the stream ends abnormally, the
    # command fails, and no byte of the 200 is passed on.
    mid = d.cli("cat", str(two))
    one_line_error(mid)
    assert mid.stdout in ("", "12345"), mid.stdout
    assert_healthy(d, known, data)


def test_huge_folder_listing_streams_and_the_node_stays_responsive(
        node: tuple[Daemon, str, bytes]) -> None:
    """5,000 entries took 3.5 s with `id` blocked all along (88,000: 62 s). Measured, not
    asserted tightly: the figures are printed."""
    d, known, data = node
    entries = [raw_block(i.to_bytes(4, "big")) for i in range(5000)]
    top, top_data = folder((f"file-{i:06d}", c, 4) for i, (c, _) in enumerate(entries))
    put_many(d, [*entries, (top, top_data)])
    worst = [0.0]
    stop = threading.Event()

    def probe() -> None:
        while not stop.wait(0.05):
            started = time.monotonic()
            d.api("id", timeout=60)
            worst[0] = max(worst[0], time.monotonic() - started)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    started = time.monotonic()
    listing = d.cli("ls", str(top), timeout=120)
    took = time.monotonic() - started
    stop.set()
    thread.join(70)
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert len(lines) == 5000 and lines[0] == f"{entries[0][0]} 4 file-000000"
    print(f"\nls of 5,000 entries: {took:.2f} s (CLI included); worst `id` meanwhile "
          f"{worst[0] * 1000:.0f} ms")
    assert worst[0] < LIVENESS_S
    # The one-document form (no stream=true) is the same listing, as Kubo shapes it.
    doc = d.api("ls", {"arg": str(top)})
    links = doc["Objects"][0]["Links"]
    assert doc["Objects"][0]["Hash"] == str(top) and len(links) == 5000
    assert links[1] == {"Name": "file-000001", "Hash": str(entries[1][0]), "Size": 4,
                        "Type": 2, "Target": ""}
    assert_healthy(d, known, data)


def test_symlinks_listed_refused_by_cat_and_written_by_get(
        node: tuple[Daemon, str, bytes], short_tmp: Path) -> None:
    d, known, data = node
    hello, hello_data = raw_block(b"hi\n")
    up, up_data = symlink(b"../../outside-target")
    odd, odd_data = symlink(b"caf\xe9\xff")  # not UTF-8: written byte for byte
    top, top_data = folder([("a.txt", hello, 3), ("odd", odd, 0), ("up", up, 0)])
    put_many(d, [(hello, hello_data), (up, up_data), (odd, odd_data), (top, top_data)])

    listing = subprocess.run([str(BIN), "ls", str(top), "--repo", str(d.repo)],
                             capture_output=True, timeout=30).stdout.splitlines()
    assert listing[1] == f"{odd} 0 odd -> ".encode() + b"caf\xe9\xff"
    assert listing[2] == f"{up} 0 up -> ../../outside-target".encode()
    links = d.api("ls", {"arg": str(top)})["Objects"][0]["Links"]
    assert [(link["Type"], link["Target"]) for link in links] == \
        [(2, ""), (4, "caf\udce9\udcff"), (4, "../../outside-target")]
    assert d.api("unixfs/stat", {"arg": str(up)}) == {
        "Hash": str(up), "Type": "symlink", "Size": 0, "Target": "../../outside-target"}
    one_line_error(d.cli("cat", str(up)), "is a symlink (to '../../outside-target')")

    out = short_tmp / "out"
    got = d.cli("get", str(top), "-o", str(out))
    assert got.returncode == 0, got.stderr
    assert (out / "a.txt").read_bytes() == b"hi\n"
    assert os.readlink(out / "up") == "../../outside-target"
    assert os.readlink(os.fsencode(out / "odd")) == b"caf\xe9\xff"
    assert not (short_tmp / "outside-target").exists()
    again = d.cli("get", str(top), "-o", str(out))  # a second get finds its own links
    assert again.returncode == 0, again.stderr
    single = d.cli("get", str(up), "-o", str(short_tmp / "single"))
    assert single.returncode == 0 and os.readlink(short_tmp / "single") == \
        "../../outside-target"
    assert_healthy(d, known, data)


@pytest.mark.parametrize("name", ["..", ".", "", "a/b", "/abs", "../escape", "nul\0x"])
def test_get_refuses_entry_names_that_leave_the_target(
        node: tuple[Daemon, str, bytes], short_tmp: Path, name: str) -> None:
    d, known, data = node
    payload, payload_data = raw_block(b"payload")
    top, top_data = folder([(name, payload, 7)])
    put_many(d, [(payload, payload_data), (top, top_data)])
    work = short_tmp / "work"
    work.mkdir()
    before = sorted(p.name for p in short_tmp.iterdir())
    one_line_error(d.cli("get", str(top), "-o", str(work / "out")), "unsafe entry name")
    assert sorted(p.name for p in short_tmp.iterdir()) == before
    assert [p.name for p in work.rglob("*")] == ["out"]  # the target folder, empty
    assert_healthy(d, known, data)


def test_get_one_line_errors(node: tuple[Daemon, str, bytes], short_tmp: Path) -> None:
    """A 300-byte name, a name that is both a file and a folder, a symlink and a folder of
    one name (which would write through the link), a deep folder chain: each was a
    traceback (or worse); each is now one line, and nothing lands outside the target."""
    d, known, data = node
    payload, payload_data = raw_block(b"payload")
    inner, inner_data = folder([("f", payload, 7)])
    outside = short_tmp / "outside"
    outside.mkdir()
    escape, escape_data = symlink(str(outside).encode())
    long_name, long_data = folder([("n" * 300, payload, 7)])
    both, both_data = folder([("x", payload, 7), ("x", inner, 60)])
    via_link, via_link_data = folder([("s", escape, 0), ("s", inner, 60)])
    blocks = [(payload, payload_data), (inner, inner_data), (escape, escape_data),
              (long_name, long_data), (both, both_data), (via_link, via_link_data)]
    chain = inner
    for _ in range(3000):
        chain, body = folder([("d", chain, 0)])
        blocks.append((chain, body))
    put_many(d, blocks)

    one_line_error(d.cli("get", str(long_name), "-o", str(short_tmp / "a")),
                   "File name too long")
    one_line_error(d.cli("get", str(both), "-o", str(short_tmp / "b")),
                   "'x' appears twice")
    one_line_error(d.cli("get", str(via_link), "-o", str(short_tmp / "c")),
                   "'s' appears twice")
    assert list(outside.iterdir()) == []
    try:
        deep = d.cli("get", str(chain), "-o", str(short_tmp / "e"), timeout=600)
        one_line_error(deep, "File name too long")
        assert len(deep.stderr) < 400
    finally:
        remove_deep(short_tmp / "e")
    assert_healthy(d, known, data)


def remove_deep(path: Path) -> None:
    """shutil.rmtree recurses (RecursionError on a 2,000-level tree, whose paths also pass
    PATH_MAX): flatten the tree a level at a time, each folder moved up beside ``path``."""
    pending, moved = [path], 0
    while pending:
        top = pending.pop()
        if not top.exists():
            continue
        for entry in os.scandir(top):
            if entry.is_dir(follow_symlinks=False):
                moved += 1
                flat = path.parent / f".flat-{moved}"
                os.rename(entry.path, flat)
                pending.append(flat)
            else:
                os.unlink(entry.path)
        os.rmdir(top)


def test_stream_listing_is_kubo_shaped(node: tuple[Daemon, str, bytes]) -> None:
    d, known, data = node
    hello, hello_data = raw_block(b"hi\n")
    top, top_data = folder([("a", hello, 3), ("b", hello, 3)])
    empty, empty_data = folder([])
    put_many(d, [(hello, hello_data), (top, top_data), (empty, empty_data)])
    with Client(d.repo / "api.sock", repo=d.repo) as client:
        with client.stream("ls", {"arg": str(top), "stream": "true"}) as response:
            lines = [json.loads(line) for line in response.iter_lines() if line]
        with client.stream("ls", {"arg": str(empty), "stream": "true"}) as response:
            nothing = [json.loads(line) for line in response.iter_lines() if line]
    assert [obj["Objects"][0]["Links"][0]["Name"] for obj in lines] == ["a", "b"]
    assert all(obj["Objects"][0]["Hash"] == str(top) for obj in lines)
    assert nothing == [{"Objects": [{"Hash": str(empty), "Links": []}]}]
    assert d.api("ls", {"arg": str(empty)}) == {"Objects": [{"Hash": str(empty), "Links": []}]}
    assert_healthy(d, known, data)
