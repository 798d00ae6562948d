"""The gateway over real HTTP (httpx, as curl would): one daemon, a folder added with our CLI.

Checks the path gateway's contract (Range, multi-range, 416, HEAD, 304, trailing-slash
redirect, index.html, listings, 404, 400) and the trustless answers (?format=raw / car, read
back with our CAR reader, every block verified)."""

from __future__ import annotations

import random
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers import Daemon

from ipfs_kit_node.codecs.car import CarBlock, CarHeader, CarReader


class Site:
    def __init__(self, daemon: Daemon, folder: Path, root: str) -> None:
        self.daemon = daemon
        self.folder = folder
        self.root = root
        self.http = httpx.Client(base_url=daemon.gateway_url, timeout=30)


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    tmp = Path(tempfile.mkdtemp(prefix="ikn-gw-", dir="/tmp"))
    folder = tmp / "site"
    (folder / "docs").mkdir(parents=True)
    (folder / "web").mkdir()
    (folder / "docs" / "big.bin").write_bytes(random.Random(7).randbytes(700_000))
    (folder / "docs" / "notes.txt").write_text("hello gateway\n")
    (folder / "docs" / "data.csv").write_text("a,b\n1,2\n")
    (folder / "docs" / "ünï cødé.txt").write_text("unicode name\n")
    (folder / "web" / "index.html").write_text("<!doctype html><p>home</p>")
    (folder / "web" / "style.css").write_text("p{}")
    daemon = Daemon(tmp, name="gw").start()
    try:
        out = daemon.cli("add", "-r", "-Q", "--cid-version", "1", str(folder))
        assert out.returncode == 0, out.stderr
        s = Site(daemon, folder, out.stdout.strip())
        yield s
        s.http.close()
    finally:
        daemon.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def car_of(body: bytes) -> tuple[CarHeader, list[CarBlock]]:
    reader = CarReader()
    events = reader.feed(body)
    reader.close()
    assert isinstance(events[0], CarHeader)
    return events[0], [e for e in events[1:] if isinstance(e, CarBlock)]


def test_file_headers_and_bytes(site: Site) -> None:
    r = site.http.get(f"/ipfs/{site.root}/docs/big.bin")
    assert r.status_code == 200
    assert r.content == (site.folder / "docs" / "big.bin").read_bytes()
    assert r.headers["content-length"] == "700000"
    assert r.headers["cache-control"] == "public, max-age=29030400, immutable"
    assert r.headers["x-ipfs-path"] == f"/ipfs/{site.root}/docs/big.bin"
    roots = r.headers["x-ipfs-roots"].split(",")
    assert len(roots) == 3 and roots[0] == site.root
    assert r.headers["etag"] == f'"{roots[-1]}"'
    assert r.headers["accept-ranges"] == "bytes"
    assert site.http.get(f"/ipfs/{site.root}/docs/data.csv").headers["content-type"] \
        .startswith("text/csv")
    notes = site.http.get(f"/ipfs/{site.root}/docs/notes.txt")
    assert notes.text == "hello gateway\n" and notes.headers["content-type"].startswith(
        "text/plain")
    assert site.http.get(f"/ipfs/{site.root}/docs/ünï cødé.txt").text == "unicode name\n"


def test_ranges(site: Site) -> None:
    data = (site.folder / "docs" / "big.bin").read_bytes()
    url = f"/ipfs/{site.root}/docs/big.bin"
    r = site.http.get(url, headers={"range": "bytes=0-99"})
    assert r.status_code == 206 and r.content == data[:100]
    assert r.headers["content-range"] == "bytes 0-99/700000"
    r = site.http.get(url, headers={"range": "bytes=262140-262150"})  # across two leaves
    assert r.content == data[262140:262151]
    r = site.http.get(url, headers={"range": "bytes=-10"})
    assert r.content == data[-10:]
    r = site.http.get(url, headers={"range": "bytes=5-9,600000-600004"})
    assert r.status_code == 206
    assert r.headers["content-type"].startswith("multipart/byteranges; boundary=")
    assert int(r.headers["content-length"]) == len(r.content)
    assert data[5:10] in r.content and data[600000:600005] in r.content
    assert b"content-range: bytes 600000-600004/700000" in r.content
    r = site.http.get(url, headers={"range": "bytes=800000-"})
    assert r.status_code == 416 and r.headers["content-range"] == "bytes */700000"


def test_head_and_not_modified(site: Site) -> None:
    url = f"/ipfs/{site.root}/docs/big.bin"
    head = site.http.head(url)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == "700000"
    again = site.http.get(url, headers={"if-none-match": head.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == head.headers["etag"]
    assert site.http.get(url, headers={"if-none-match": '"other"'}).status_code == 200


def test_folders(site: Site) -> None:
    r = site.http.get(f"/ipfs/{site.root}/docs")
    assert r.status_code == 301
    assert r.headers["location"] == f"/ipfs/{site.root}/docs/"
    listing = site.http.get(f"/ipfs/{site.root}/docs/")
    assert listing.status_code == 200 and listing.headers["content-type"].startswith("text/html")
    assert "notes.txt" in listing.text and "big.bin" in listing.text
    home = site.http.get(f"/ipfs/{site.root}/web/")
    assert home.text == "<!doctype html><p>home</p>"
    assert home.headers["content-type"].startswith("text/html")
    root = site.http.get(f"/ipfs/{site.root}", follow_redirects=True)
    assert root.status_code == 200 and "docs" in root.text


def test_errors(site: Site) -> None:
    assert site.http.get(f"/ipfs/{site.root}/docs/missing.txt").status_code == 404
    assert site.http.get(f"/ipfs/{site.root}/docs/notes.txt/below").status_code == 404
    assert site.http.get("/ipfs/not-a-cid").status_code == 400
    assert site.http.get("/elsewhere").status_code == 404
    assert site.http.post(f"/ipfs/{site.root}").status_code == 405
    assert site.http.get(f"/ipfs/{site.root}?format=tar").status_code == 406
    assert site.http.get(f"/ipfs/{site.root}?format=car&dag-scope=nope").status_code == 400
    # a CID nobody has: no peers to ask, so it is known to be unavailable here
    missing = "bafkreie5cvv4h45feyyt7ertvuj3gtbdyvvtcr5upr6smsnmzwpqtzgy2u"
    assert site.http.get(f"/ipfs/{missing}").status_code == 404
    assert site.http.get(f"/ipfs/{missing}",
                         headers={"cache-control": "only-if-cached"}).status_code == 412
    # the API is not reachable through the gateway
    assert site.http.post("/api/v0/id").status_code in (404, 405)
    assert site.daemon.api("id")  # and the node is still fine


def test_raw_block(site: Site) -> None:
    r = site.http.get(f"/ipfs/{site.root}/docs/notes.txt?format=raw")
    assert r.status_code == 200 and r.headers["content-type"] == "application/vnd.ipld.raw"
    cid = r.headers["x-ipfs-roots"].split(",")[-1]
    assert r.headers["content-disposition"] == f'attachment; filename="{cid}.bin"'
    assert r.headers["x-content-type-options"] == "nosniff"
    by_accept = site.http.get(f"/ipfs/{cid}", headers={"accept": "application/vnd.ipld.raw"})
    assert by_accept.content == r.content
    assert by_accept.headers["content-location"] == f"/ipfs/{cid}?format=raw"
    assert by_accept.headers["vary"] == "Accept"  # chosen by Accept (RFC 9110 12.5.5)
    plain = site.http.get(f"/ipfs/{cid}")
    assert plain.headers["vary"] == "Accept" and "content-location" not in plain.headers
    assert "vary" not in r.headers  # ?format= chose it: Accept played no part


def test_car_scopes(site: Site) -> None:
    url = f"/ipfs/{site.root}/docs/big.bin"
    r = site.http.get(url, params={"format": "car"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/vnd.ipld.car; version=1; order=dfs; dups=n"
    header, blocks = car_of(r.content)
    terminal = r.headers["x-ipfs-roots"].split(",")[-1]
    assert [str(c) for c in header.roots] == [terminal]
    assert [str(b.cid) for b in blocks[:3]] == r.headers["x-ipfs-roots"].split(",")
    leaves = b"".join(b.data for b in blocks if b.cid.codec.name == "raw")
    assert leaves == (site.folder / "docs" / "big.bin").read_bytes()
    block = site.http.get(url, params={"format": "car", "dag-scope": "block"},
                          headers={"accept": "application/vnd.ipld.car"})
    assert len(car_of(block.content)[1]) == 3
    part = site.http.get(url, params={"format": "car", "entity-bytes": "0:99"})
    assert len(car_of(part.content)[1]) == 4
    assert part.headers["etag"] != r.headers["etag"]
    whole = site.http.get(f"/ipfs/{site.root}", params={"format": "car"})
    _, all_blocks = car_of(whole.content)
    assert len({b.cid for b in all_blocks}) == len(all_blocks)
    stat = site.daemon.api("repo/stat")
    assert len(all_blocks) <= stat["NumObjects"]
    refused = site.http.get(url, headers={"accept": "application/vnd.ipld.car; dups=y"})
    assert refused.status_code == 406


def test_metrics_count_gateway_requests(site: Site) -> None:
    site.http.get(f"/ipfs/{site.root}/docs/notes.txt")
    transport = httpx.HTTPTransport(uds=str(site.daemon.repo / "api.sock"))
    with httpx.Client(transport=transport, base_url="http://localhost") as api:
        text = api.get("/metrics").text
    assert 'server="gateway"' in text and 'route="/ipfs"' in text


def test_kept_small_answers_follow_the_store(site: Site, tmp_path: Path) -> None:
    """A small answer is kept between requests (the same bytes and headers again, 304 on its
    ETag) until its block leaves the store: then the gateway answers as if never kept."""
    path = tmp_path / "kept.txt"
    path.write_text("kept answer\n")
    out = site.daemon.cli("add", "-Q", "--cid-version", "1", "--pin", "false", str(path))
    cid = out.stdout.strip()
    first, second = (site.http.get(f"/ipfs/{cid}?filename=k.txt") for _ in range(2))
    assert first.status_code == second.status_code == 200
    assert first.content == second.content == b"kept answer\n"
    assert first.headers == second.headers
    assert first.headers["content-length"] == "12"
    head = site.http.head(f"/ipfs/{cid}?filename=k.txt")
    assert head.status_code == 200 and head.headers["etag"] == first.headers["etag"]
    cached = site.http.get(f"/ipfs/{cid}?filename=k.txt",
                           headers={"if-none-match": first.headers["etag"]})
    assert cached.status_code == 304 and cached.headers["etag"] == first.headers["etag"]
    ranged = site.http.get(f"/ipfs/{cid}?filename=k.txt", headers={"range": "bytes=0-3"})
    assert ranged.status_code == 206 and ranged.content == b"kept"
    site.daemon.api("block/rm", {"arg": cid})
    gone = site.http.get(f"/ipfs/{cid}?filename=k.txt")
    assert gone.status_code in (404, 504), gone.text


def test_answer_cache_keys_stay_small_under_junk_requests() -> None:
    """Junk query arguments and huge Accept headers neither make new kept answers nor grow
    the memory past what is counted (the key holds only what changes the answer)."""
    import tracemalloc

    import trio
    from multiformats import CID, multihash

    from ipfs_kit_node.api.gateway import ANSWER_CACHE_BYTES, Gateway
    from ipfs_kit_node.api.router import Request

    data = b"hello"
    cid = CID("base32", 1, "raw", multihash.digest(data, "sha2-256"))

    class Blocks:  # in-memory getter (the gateway's sans-IO core; no network involved)
        async def get(self, c: object) -> bytes:
            return data

    gw = Gateway(Blocks(), lambda c: True)

    async def main() -> int:
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            for i in range(300):
                junk = f"x{i:05d}" + "y" * 30_000
                for fmt, accept in ((["raw"], "a" * 30_000),
                                    ([], "application/vnd.ipld.raw, " + "a" * 30_000)):
                    query = {"z": [junk], **({"format": fmt} if fmt else {})}
                    r = await gw.handle(Request("GET", f"/ipfs/{cid}", query,
                                                headers=(("accept", accept),)))
                    assert r.status == 200 and r.body == data
            return int(tracemalloc.get_traced_memory()[0] - base)
        finally:
            tracemalloc.stop()

    used = trio.run(main)
    assert len(gw._answers) == 1  # format=raw: one answer; by Accept with a 30 KB query: none
    assert gw._answer_bytes < 4096 <= ANSWER_CACHE_BYTES
    assert used < 2_000_000, used  # keys with the raw query and Accept: ~36 MB here


def test_a_range_of_non_ascii_digits_is_ignored(site: Site) -> None:
    """"²".isdigit() is True but int() refuses it: such a Range is malformed, so ignored."""
    url = f"/ipfs/{site.root}/docs/notes.txt"
    for bad in ("bytes=²-", "bytes=-²", "bytes=0-³"):  # sent as latin-1 bytes
        r = site.http.get(url, headers={"range": bad.encode("latin-1")})
        assert r.status_code == 200 and r.content == b"hello gateway\n", (bad, r.text)


def _raw_exchange(url: str, payload: bytes, answers: int, bodiless: tuple[int, ...] = ()
                  ) -> list[bytes]:
    """Send ``payload`` on one connection; the raw bytes of ``answers`` responses, each read
    through its Content-Length (none for the answers numbered in ``bodiless``: HEAD, 304)."""
    import socket

    host, port = url.removeprefix("http://").split(":")
    out: list[bytes] = []
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(payload)
        buf = b""
        while len(out) < answers:
            while b"\r\n\r\n" not in buf:
                chunk = sock.recv(65536)
                assert chunk, f"closed after {len(out)} answers"
                buf += chunk
            head, _, rest = buf.partition(b"\r\n\r\n")
            length = 0 if len(out) in bodiless else int(next(
                line.split(b":")[1] for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")))
            while len(rest) < length:
                chunk = sock.recv(65536)
                assert chunk
                rest += chunk
            out.append(head + b"\r\n\r\n" + rest[:length])
            buf = rest[length:]
    return out


def test_kept_answers_are_the_bytes_h11_sent(site: Site) -> None:
    """A kept small answer is written without h11 (the gateway's fast loop): the same bytes,
    status line and headers included, as the first answer h11 wrote; pipelined requests get
    their answers in order, and a request the loop leaves to h11 (Connection: close, a body,
    HTTP/1.0, a duplicate Host) is answered as before."""
    base = site.daemon.gateway_url
    path = f"/ipfs/{site.root}/docs/notes.txt?download=false"  # a key no other test keeps
    get = f"GET {path} HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n".encode()
    first, kept, again = _raw_exchange(base, get * 3, 3)  # pipelined on one connection
    assert first == kept == again
    assert first.startswith(b"HTTP/1.1 200 \r\n") and first.endswith(b"\r\n\r\nhello gateway\n")
    etag = next(line.split(b": ", 1)[1] for line in first.split(b"\r\n")
                if line.startswith(b"etag: "))
    conditional = f"GET {path} HTTP/1.1\r\nHost: x\r\nIf-None-Match: ".encode() + etag + \
        b"\r\n\r\n"
    head = f"HEAD {path} HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n".encode()
    not_modified, headers_only = _raw_exchange(base, conditional + head, 2, (0, 1))
    assert not_modified.startswith(b"HTTP/1.1 304 \r\n") and b"etag: " + etag in not_modified
    assert headers_only == first.removesuffix(b"hello gateway\n")
    # Left to h11: each still answered, the same body.
    for extra in (b"Connection: close\r\n", b"Content-Length: 0\r\n", b"Host: y\r\n"):
        request = get.replace(b"Accept: */*\r\n", extra)
        answer = _raw_exchange(base, request, 1)[0]
        if extra.startswith(b"Host"):
            assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
        else:
            assert answer.endswith(b"hello gateway\n"), answer[:200]
    old = f"GET {path} HTTP/1.0\r\n\r\n".encode()
    assert _raw_exchange(base, old, 1)[0].endswith(b"hello gateway\n")


def test_file_of_small_chunks_is_sent_whole(site: Site, tmp_path: Path) -> None:
    """A file of 512-byte blocks: the gateway writes a known-length body several chunks to a
    system call, and Linux takes at most 1,024 buffers in one (more: EMSGSIZE, once read as
    the client leaving, so the headers went out and no body). The RPC's cat over TCP too."""
    import hashlib

    data = random.Random(11).randbytes(600_000)
    (tmp_path / "small-chunks.bin").write_bytes(data)
    out = site.daemon.cli("add", "-Q", "--cid-version", "1", "--chunker", "size-512",
                          str(tmp_path / "small-chunks.bin"))
    assert out.returncode == 0, out.stderr
    cid = out.stdout.strip()
    r = site.http.get(f"/ipfs/{cid}")
    assert r.status_code == 200 and r.headers["content-length"] == "600000"
    assert hashlib.sha256(r.content).hexdigest() == hashlib.sha256(data).hexdigest()
    r = site.http.get(f"/ipfs/{cid}", headers={"range": "bytes=1000-"})
    assert r.status_code == 206 and r.content == data[1000:]
    with httpx.Client(base_url=site.daemon.rpc_url, timeout=30) as rpc:
        r = rpc.post("/api/v0/cat", params={"arg": cid})
    assert r.status_code == 200
    assert hashlib.sha256(r.content).hexdigest() == hashlib.sha256(data).hexdigest()


def test_heads_h11_reads_differently_are_left_to_it(site: Site) -> None:
    """The kept-answer loop waits for a CRLF CRLF; a head h11 reads otherwise goes to h11 at
    once: one ending in bare LFs is answered (alone or behind a kept answer on the same
    connection), and bytes no request starts with (a TLS ClientHello) get a 400 at once, not
    after the idle timeout (120 s)."""
    import socket

    base = site.daemon.gateway_url
    path = f"/ipfs/{site.root}/docs/notes.txt?filename=lf.txt"  # a key no other test keeps
    get = f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    assert _raw_exchange(base, get, 1)[0].endswith(b"hello gateway\n")  # now kept
    bare = f"GET {path} HTTP/1.1\nHost: x\n\n".encode()
    mixed = f"GET {path} HTTP/1.1\r\nHost: x\r\n\n".encode()
    for request in (bare, mixed, get + bare, get + mixed, bare + get):
        answers = _raw_exchange(base, request, request.count(b"GET "))
        assert all(a.startswith(b"HTTP/1.1 200") and a.endswith(b"hello gateway\n")
                   for a in answers), (request, answers)
    host, port = base.removeprefix("http://").split(":")
    hello = bytes.fromhex("160301020001000200fc0303") + bytes(range(64))
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sock.sendall(hello)  # a client would wait for the server's hello; 20 s is plenty
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]


def test_a_target_urlsplit_refuses_is_a_400(site: Site) -> None:
    """"//[x/..." makes urlsplit raise (an unclosed IPv6 host): a 400 naming the target,
    on the kept-answer loop and on h11's, and no error logged with a traceback."""
    base = site.daemon.gateway_url
    target = f"//[x/ipfs/{site.root}/docs/notes.txt"
    for request in (f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n",
                    f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                    f"GET {target} HTTP/1.0\r\n\r\n"):
        answer = _raw_exchange(base, request.encode(), 1)[0]
        assert answer.startswith(b"HTTP/1.1 400 ") and b"malformed request target" in answer, \
            answer[:300]
    assert "Invalid IPv6 URL" not in site.daemon.log(), site.daemon.log()[-2000:]
