"""A raw py-libp2p peer sends fuzzed messages: 3,000 on Bitswap 1.2.0 to a worker, 2,000 on the
task stream to a master that lists the peer as a submitter. 5,000 in all.

Hypothesis draws the messages first (valid-shaped Bitswap messages with random wants, CIDs,
blocks and presences; raw protobuf with wrong wire types and runaway lengths; garbage; truncated
frames; oversized length prefixes; task frames of every op with random fields, and raw msgpack);
then one connection sends them in order, opening a new stream whenever the daemon resets one
(a reset after garbage is the right answer). The daemon is checked alive as we go, and must
pass the health check (hostile_kit.assert_healthy) at the end.
"""

from __future__ import annotations

import hashlib
import os
import random
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import multiaddr
import pytest
import trio
from helpers import Daemon, make_host
from hostile_kit import FuzzReport, IdProbe, Target, loop_figures
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from libp2p.abc import INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.peerinfo import info_from_p2p_addr
from multiformats import CID, multihash

from ipfs_kit_node.client import Client
from ipfs_kit_node.codecs import dagpb
from ipfs_kit_node.codecs.varint import encode as varint
from ipfs_kit_node.protocols.bitswap.codec import Message, Presence, WantEntry, WantType, encode
from ipfs_kit_node.protocols.tasks import Task
from ipfs_kit_node.protocols.tasks.frames import Hello, Query, Submit, encode_frame

SCALE = float(os.environ.get("HOSTILE_FUZZ_SCALE", "1"))  # e.g. 0.1 for a quick local run
BITSWAP_MESSAGES = max(1, int(3000 * SCALE))
TASK_MESSAGES = max(1, int(2000 * SCALE))
BITSWAP = "/ipfs/bitswap/1.2.0"
TASKS = "/ipfs-kit/tasks/1.0.0"
STEP_TIMEOUT = 20.0  # a write or stream open that takes longer than this is a frozen daemon
Payload = tuple[str, bytes, bool]  # (kind, bytes, end the stream after it)


def draw(strategy: st.SearchStrategy[Any], n: int) -> list[Any]:
    """n examples of ``strategy``, drawn by hypothesis (no shrinking: the daemon is stateful,
    so a failure is reported with the exact message that preceded it)."""
    out: list[Any] = []

    @settings(max_examples=n, deadline=None, derandomize=False, database=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(example: Any) -> None:
        out.append(example)

    collect()
    return out


# -- protobuf by hand: any field number, any wire type ---------------------------------------

def pb_field(number: int, wire: int, value: int | bytes) -> bytes:
    key = varint((number << 3) | wire)
    if wire == 0:
        number_value = value if isinstance(value, int) else int.from_bytes(value[:9], "big")
        return key + varint(number_value % (1 << 70))  # up to 10 bytes: over protobuf's 64 bits
    if wire == 1:
        return key + (value if isinstance(value, bytes) else b"\0" * 8)[:8].ljust(8, b"\0")
    if wire == 5:
        return key + (value if isinstance(value, bytes) else b"\0" * 4)[:4].ljust(4, b"\0")
    data = value if isinstance(value, bytes) else varint(value)
    return key + varint(len(data)) + data


def raw_protobuf(depth: int = 2) -> st.SearchStrategy[bytes]:
    scalar = st.one_of(st.integers(0, 2**70), st.binary(max_size=300))
    leaf = st.builds(pb_field, st.integers(1, 20), st.sampled_from([0, 1, 2, 5, 3, 4, 6, 7]),
                     scalar)
    if depth == 0:
        return st.lists(leaf, max_size=8).map(b"".join)
    nested = st.builds(lambda n, body: pb_field(n, 2, body), st.integers(1, 6),
                       raw_protobuf(depth - 1))
    return st.lists(st.one_of(leaf, nested, nested), max_size=8).map(b"".join)


# -- Bitswap ---------------------------------------------------------------------------------

def random_cid() -> st.SearchStrategy[CID]:
    return st.builds(
        lambda data, codec, hashfun: CID("base32", 1, codec, multihash.digest(data, hashfun)),
        st.binary(max_size=64), st.sampled_from(["raw", "dag-pb", "dag-cbor", "libp2p-key"]),
        st.sampled_from(["sha2-256", "sha2-512", "blake2b-256", "identity"]))


def bitswap_payloads(known: list[CID]) -> st.SearchStrategy[Payload]:
    cid = st.one_of(st.sampled_from(known), random_cid(), random_cid())
    want = st.builds(WantEntry, cid, st.integers(-2**31, 2**31 - 1), st.booleans(),
                     st.sampled_from(list(WantType)), st.booleans())
    blocks = st.lists(st.binary(max_size=5000).map(
        lambda b: (CID("base32", 1, "raw", multihash.digest(b, "sha2-256")), b)), max_size=4)
    message = st.builds(
        Message, st.lists(want, max_size=50).map(tuple), st.booleans(), blocks.map(tuple),
        st.lists(st.tuples(cid, st.sampled_from(list(Presence))), max_size=20).map(tuple),
        st.integers(0, 2**31 - 1))
    valid = st.builds(lambda m, v: encode(m, v), message, st.sampled_from(
        [BITSWAP, "/ipfs/bitswap/1.0.0"]))  # a 1.0.0-shaped body on a 1.2.0 stream, too
    bad_block = st.builds(  # a payload block whose prefix lies about its codec or hash
        lambda prefix, data: frame_pb(pb_field(3, 2, pb_field(1, 2, prefix)
                                               + pb_field(2, 2, data))),
        st.binary(max_size=12), st.binary(max_size=2000))
    return st.one_of(
        valid.map(lambda b: ("valid", b, False)), valid.map(lambda b: ("valid", b, False)),
        valid.map(lambda b: ("valid", b, False)),
        raw_protobuf().map(lambda b: ("raw protobuf", frame_pb(b), False)),
        raw_protobuf().map(lambda b: ("raw protobuf", frame_pb(b), False)),
        bad_block.map(lambda b: ("lying block prefix", b, False)),
        st.binary(min_size=1, max_size=3000).map(lambda b: ("garbage", b, True)),
        st.binary(max_size=3000).map(lambda b: ("framed garbage", frame_pb(b), False)),
        st.builds(lambda b, cut: ("truncated frame", b[:max(1, len(b) * cut // 100)], True),
                  valid, st.integers(1, 99)),
        st.builds(lambda n, tail: ("oversized varint", varint(n) + tail, True),
                  st.integers(4 * 1024 * 1024 + 1, 2**63), st.binary(max_size=100)),
        st.builds(lambda n: ("runaway varint", b"\xff" * n + b"\x01", True), st.integers(5, 40)),
        st.builds(lambda n: ("zero-length frames", b"\x00" * n, False), st.integers(1, 1000)),
    )


def heavy_bitswap() -> list[Payload]:
    """Big messages, a few of each (drawing hundreds would take minutes and gigabytes): the
    issue's 100,000 wants in one 4 MB message, 20,000 wants, and a frame just over 4 MiB."""
    def wants(n: int) -> bytes:
        """Entries holding only a CID (40 bytes each), encoded by hand: fast, and 100,000
        of them fit in 4 MiB."""
        salt = os.urandom(8)
        entries = b"".join(
            pb_field(1, 2, pb_field(1, 2, b"\x01\x55\x12\x20"
                                    + hashlib.sha256(salt + i.to_bytes(4, "big")).digest()))
            for i in range(n))
        return frame_pb(pb_field(1, 2, entries))

    over = 4 * 1024 * 1024 + 1
    return [*(("many wants", wants(n), False) for n in (20_000, 20_000, 100_000)),
            *(("frame just over 4 MiB", varint(over) + os.urandom(over), True)
              for _ in range(3))]


def frame_pb(body: bytes) -> bytes:
    return varint(len(body)) + body


# -- task frames -----------------------------------------------------------------------------

def task_payloads(peer_id: str, decoys: list[str]) -> st.SearchStrategy[Payload]:
    text = st.one_of(st.text(max_size=30), st.text(max_size=9000), st.just(peer_id))
    scalar = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1), st.floats(),
                       text, st.binary(max_size=100))
    anything = st.recursive(scalar, lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=10), inner, max_size=5)),
        max_leaves=20)
    handler = st.one_of(st.sampled_from(["noop", "sha256", "concat", "unixfs-stat"]), text)
    task = st.fixed_dictionaries(
        {"task_id": st.one_of(st.uuids().map(str), text), "handler": handler},
        optional={"inputs": st.lists(st.one_of(st.sampled_from(decoys), text), max_size=70),
                  "params": st.dictionaries(st.text(max_size=10), scalar, max_size=70),
                  "priority": st.one_of(st.integers(-2**63, 2**64 - 1), scalar),
                  "deadline": st.one_of(st.floats(), scalar), "submitter": text,
                  "attempt": st.integers(-5, 2**63), "origins": st.lists(text, max_size=20),
                  "extra": anything})
    result = st.fixed_dictionaries(
        {"task_id": text, "worker": st.one_of(st.just(peer_id), text)},
        optional={"output": st.one_of(st.sampled_from(decoys), text, st.none()),
                  "error": st.one_of(text, st.none()), "attempt": st.integers(-5, 2**40)})
    status = st.fixed_dictionaries(
        {"peer": st.one_of(st.just(peer_id), text), "role": text,
         "capacity": st.integers(-5, 2**40), "running": st.integers(-5, 2**40)},
        optional={"cpu": st.floats(), "memory": st.floats(), "disk_free": st.integers(),
                  "sent_at": st.floats()})
    ids = st.lists(text, max_size=50)
    req = st.one_of(st.integers(-2**63, 2**64 - 1), scalar)
    ops = st.one_of(
        st.fixed_dictionaries({"op": st.just("hello"), "role": st.one_of(
            st.just("worker"), text), "capacity": st.one_of(st.integers(-5, 2**40), scalar),
            "handlers": st.lists(text, max_size=20)}),
        st.fixed_dictionaries({"op": st.just("status"), "status": st.one_of(status, anything)}),
        st.fixed_dictionaries({"op": st.just("submit"), "req": req,
                               "tasks": st.lists(task, max_size=20)}),
        st.fixed_dictionaries({"op": st.just("submit"), "req": req,
                               "tasks": st.lists(task, max_size=20)}),
        st.fixed_dictionaries({"op": st.just("results"),
                               "results": st.lists(result, max_size=20)}),
        st.fixed_dictionaries({"op": st.sampled_from(["query", "cancel", "ack"]), "req": req,
                               "ids": ids}),
        st.fixed_dictionaries({"op": st.sampled_from(["assign", "accepted", "states"]),
                               "tasks": st.lists(task, max_size=3), "req": req, "ids": ids,
                               "states": st.lists(anything, max_size=3)}),
        st.fixed_dictionaries({"op": text}),
    )
    valid_task = st.builds(
        Task, st.uuids().map(str), st.sampled_from(["noop", "sha256", "concat", "nope"]),
        st.lists(st.sampled_from(decoys), max_size=3).map(tuple),
        st.dictionaries(st.text(max_size=10), st.one_of(st.text(max_size=50), st.integers(
            -2**53, 2**53), st.booleans(), st.none()), max_size=5),
        st.integers(-100, 100), st.one_of(st.none(), st.floats(0, 2e9)))
    valid = st.one_of(
        st.builds(lambda r, ts: encode_frame(Submit(r, tuple(ts))), st.integers(0, 2**31),
                  st.lists(valid_task, min_size=1, max_size=10)),
        st.builds(lambda r, ids: encode_frame(Query(r, tuple(ids))), st.integers(0, 2**31),
                  st.lists(st.uuids().map(str), max_size=10)),
        st.builds(lambda c, hs: encode_frame(Hello("worker", c, tuple(hs))),
                  st.integers(1, 64), st.lists(st.sampled_from(["noop", "sha256"]))))
    doc = st.builds(lambda d, v: {"v": v, **d}, ops, st.one_of(st.just(1), st.just(1),
                                                               st.just(1), scalar))
    packed = doc.filter(_packable).map(lambda d: msgpack.packb(d, use_bin_type=True))
    return st.one_of(
        valid.map(lambda b: ("valid task frame", b, False)),
        valid.map(lambda b: ("valid task frame", b, False)),
        packed.map(lambda b: ("task frame", frame_pb(b), False)),
        packed.map(lambda b: ("task frame", frame_pb(b), False)),
        packed.map(lambda b: ("task frame", frame_pb(b), False)),
        packed.map(lambda b: ("task frame", frame_pb(b), False)),
        anything.map(lambda d: ("random msgpack", frame_pb(msgpack.packb(d)), False)),
        st.binary(min_size=1, max_size=3000).map(lambda b: ("framed garbage", frame_pb(b),
                                                            False)),
        st.binary(min_size=1, max_size=3000).map(lambda b: ("garbage", b, True)),
        st.builds(lambda b, cut: ("truncated frame", frame_pb(b)[:cut], True), packed,
                  st.integers(1, 50)),
        st.builds(lambda n: ("nested msgpack", frame_pb(b"\x91" * n + b"\xc0"), False),
                  st.integers(100, 100_000)),
        st.builds(lambda n, tail: ("oversized varint", varint(n) + tail, True),
                  st.integers(4 * 1024 * 1024 + 1, 2**63), st.binary(max_size=100)),
        st.builds(lambda n: ("runaway varint", b"\xff" * n + b"\x01", True), st.integers(5, 40)),
    )


# -- sending ---------------------------------------------------------------------------------

class Sender:
    """One connection to the daemon; a stream per protocol, reopened when the daemon resets it.
    A reader drains what the daemon answers on the stream (a master writes back)."""

    def __init__(self, host: Any, daemon: Daemon, protocol: str, report: FuzzReport,
                 nursery: trio.Nursery) -> None:
        self.host = host
        self.daemon = daemon
        self.protocol = protocol
        self.report = report
        self.nursery = nursery
        self.info = info_from_p2p_addr(multiaddr.Multiaddr(daemon.addr))
        self.stream: INetStream | None = None
        self.dead = True
        self.last: deque[tuple[str, bytes]] = deque(maxlen=5)

    def check_alive(self) -> None:
        proc = self.daemon.proc
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"daemon exited {proc.returncode}; last messages (newest last): "
                        f"{[(k, _cut(b)) for k, b in self.last]}\n{self.daemon.log()[-3000:]}")

    async def _open(self) -> None:
        if self.stream is not None:
            with trio.move_on_after(2):
                await self.stream.reset()
        for attempt in range(3):
            try:
                with trio.fail_after(STEP_TIMEOUT):
                    if self.host.get_network().connections.get(self.info.peer_id) is None:
                        self.report.count(f"{self.protocol}: connects")
                        await self.host.connect(self.info)
                    self.stream = await self.host.new_stream(self.info.peer_id,
                                                             [TProtocol(self.protocol)])
                break
            except trio.TooSlowError:
                raise
            except Exception as exc:
                self.check_alive()
                self.report.count(f"{self.protocol}: stream open failed "
                                  f"({type(exc).__name__})")
                if attempt == 2:
                    raise
                await trio.sleep(0.2)
        self.dead = False
        self.report.count(f"{self.protocol}: streams opened")
        self.nursery.start_soon(self._drain, self.stream)

    async def _drain(self, stream: INetStream) -> None:
        try:
            while True:
                data = await stream.read(65536)
                if not data:
                    break
                self.report.count(f"{self.protocol}: bytes answered", len(data))
        except Exception:
            self.report.count(f"{self.protocol}: streams reset by the daemon")
        if stream is self.stream:
            self.dead = True

    async def send(self, kind: str, payload: bytes, end: bool) -> None:
        self.check_alive()
        self.last.append((kind, payload))
        self.report.count(f"{self.protocol}: messages")
        self.report.count(f"{self.protocol}: {kind}")
        if self.dead or self.stream is None:
            await self._open()
        assert self.stream is not None
        try:
            with trio.fail_after(STEP_TIMEOUT):
                for i in range(0, len(payload), 1 << 20):
                    await self.stream.write(payload[i:i + (1 << 20)])
                if end:
                    await self.stream.close()
        except trio.TooSlowError:
            self.report.finding("write stalled", protocol=self.protocol, kind=kind,
                                payload=_cut(payload))
            self.dead = True
        except Exception:
            self.report.count(f"{self.protocol}: writes refused (stream reset)")
            self.dead = True
        if end:
            self.dead = True


def _cut(b: bytes) -> str:
    return repr(b) if len(b) <= 200 else f"<{len(b)} bytes: {b[:80]!r}...>"


async def bitswap_sink(stream: INetStream) -> None:
    """The daemon answers wants on a stream it opens to us: read it all."""
    try:
        while await stream.read(65536):
            pass
    except Exception:
        return


async def run_fuzz(host: Any, target: Target, protocol: str, payloads: list[Payload],
                   report: FuzzReport) -> None:
    d = target.daemon
    log_start = len(d.log())
    report.figures[f"{protocol} before"] = loop_figures(d)
    started = time.monotonic()
    with IdProbe(d) as probe:
        async with trio.open_nursery() as nursery:
            sender = Sender(host, d, protocol, report, nursery)
            for kind, payload, end in payloads:
                await sender.send(kind, payload, end)
                await trio.sleep(0)
            if sender.stream is not None:
                with trio.move_on_after(2):
                    await sender.stream.reset()
            await trio.sleep(0.5)
            nursery.cancel_scope.cancel()
    report.figures[f"{protocol} seconds"] = round(time.monotonic() - started, 1)
    report.figures.update({f"{protocol} {k}": v for k, v in probe.figures().items()})
    report.stalls_logged(d, log_start, protocol)


def known_cids(target: Target) -> list[CID]:
    """The known file's root and its children (so wants hit real blocks too)."""
    root = CID.decode(target.known.cid)
    with Client(target.daemon.repo / "api.sock", repo=target.daemon.repo) as client, \
            client.stream("block/get", {"arg": str(root)}) as response:
        node = dagpb.decode(response.read())
    with_links = [root]
    with_links += [link.cid for link in node.links if isinstance(link.cid, CID)]
    return with_links


@pytest.mark.slow
async def test_bitswap_and_task_frames_from_a_raw_peer(
        start_target: Callable[..., Target], fuzz_report: FuzzReport, tmp_path: Path) -> None:
    host = make_host()
    me = str(host.get_id())
    worker = start_target("worker", "peer-worker")
    master = start_target("master", "peer-master", {"IPFS_KIT_TASKS_SUBMITTERS": me})
    decoys = [worker.known.cid, _put_decoy(master, tmp_path)]
    bitswap = draw(bitswap_payloads(known_cids(worker)), max(1, BITSWAP_MESSAGES - 6))
    for payload in heavy_bitswap():  # spread through the run
        bitswap.insert(random.randrange(len(bitswap) + 1), payload)
    tasks = draw(task_payloads(me, decoys), TASK_MESSAGES)
    fuzz_report.figures["drawn"] = {"bitswap": len(bitswap), "tasks": len(tasks)}
    host.set_stream_handler(TProtocol(BITSWAP), bitswap_sink)
    async with host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        await run_fuzz(host, worker, BITSWAP, bitswap, fuzz_report)
        await run_fuzz(host, master, TASKS, tasks, fuzz_report)
    fuzz_report.figures["worker after"] = await trio.to_thread.run_sync(worker.healthy)
    fuzz_report.figures["master after"] = await trio.to_thread.run_sync(master.healthy)
    fuzz_report.figures["master task states"] = master.daemon.api("task/stats")["States"]
    stalled = [f for f in fuzz_report.findings if f["kind"] == "write stalled"]
    assert not stalled, f"{len(stalled)} writes stalled over {STEP_TIMEOUT} s: {stalled[:3]}"


def _put_decoy(target: Target, folder: Path) -> str:
    f = folder / "decoy"
    f.write_bytes(os.urandom(500))
    return target.daemon.cli("block", "put", str(f)).stdout.strip()


def _packable(doc: object) -> bool:
    """Hypothesis may draw integers msgpack cannot encode (outside 64 bits): skip those."""
    try:
        msgpack.packb(doc, use_bin_type=True)
    except (OverflowError, ValueError, TypeError):
        return False
    return True
