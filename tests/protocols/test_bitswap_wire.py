"""Our Bitswap server on the wire, driven by a raw py-libp2p peer: old protocol versions, and
fuzzing (garbage, truncated protobufs, runaway lengths, oversized frames, unsolicited blocks).
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import multiaddr
import pytest
import trio
from helpers import Daemon, make_host, memory_kib
from libp2p.abc import INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from multiformats import CID, multihash

from ipfs_kit_node.cid import to_cid
from ipfs_kit_node.codecs.protobuf import bytes_field
from ipfs_kit_node.codecs.varint import encode as varint
from ipfs_kit_node.errors import BlockNotFoundError, BlockUnavailableError, ClosedNodeError
from ipfs_kit_node.protocols.bitswap import Bitswap, network
from ipfs_kit_node.protocols.bitswap.codec import (
    FrameDecoder,
    Message,
    Presence,
    WantEntry,
    WantType,
    decode,
    encode,
)
from ipfs_kit_node.storage import StoreConfig, TieredStore

MakeDaemon = Callable[..., Daemon]


async def exchange(d: Daemon, protocol: str, payload: bytes, listen_for: str | None = None,
                   wait: float = 3.0) -> list[Message]:
    """Connect, send raw bytes on a Bitswap stream, collect what the daemon sends back."""
    host = make_host()
    received: list[Message] = []
    got_any = trio.Event()

    async def handler(stream: INetStream) -> None:
        decoder = FrameDecoder()
        try:
            while True:
                data = await stream.read(65536)
                if not data:
                    return
                for body in decoder.feed(data):
                    received.append(decode(body))
                    got_any.set()
        except Exception:
            return

    if listen_for:
        host.set_stream_handler(TProtocol(listen_for), handler)
    async with host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        await host.connect(info_from_p2p_addr(multiaddr.Multiaddr(d.addr)))
        stream = await host.new_stream(info_from_p2p_addr(multiaddr.Multiaddr(d.addr)).peer_id,
                                       [TProtocol(protocol)])
        try:
            for i in range(0, len(payload), 1 << 20):
                await stream.write(payload[i:i + (1 << 20)])
        except Exception:
            pass  # the daemon may hang up on us mid-write: that is the point
        with trio.move_on_after(wait):
            await got_any.wait()
        await trio.sleep(0.2)
    return received


def put_block(d: Daemon, tmp: Path, data: bytes) -> str:
    f = tmp / f"b{len(data)}"
    f.write_bytes(data)
    return str(d.cli("block", "put", str(f)).stdout).strip()


@pytest.mark.parametrize("protocol", ["/ipfs/bitswap/1.2.0", "/ipfs/bitswap/1.1.0"])
async def test_served_over_each_protocol_version(daemon: MakeDaemon, short_tmp: Path,
                                                 protocol: str) -> None:
    d = daemon().start()
    small, large = os.urandom(500), os.urandom(5000)
    small_cid, large_cid = (CID.decode(put_block(d, short_tmp, b)) for b in (small, large))
    missing = CID("base32", 1, "raw", multihash.digest(b"absent", "sha2-256"))
    wants = (WantEntry(small_cid, want_type=WantType.HAVE),
             WantEntry(large_cid, want_type=WantType.HAVE),
             WantEntry(missing, want_type=WantType.BLOCK, send_dont_have=True))
    messages = await exchange(d, protocol, encode(Message(wants=wants), protocol),
                              listen_for=protocol)
    blocks = {str(c): b for m in messages for c, b in m.blocks}
    presences = {str(c): p.name for m in messages for c, p in m.presences}
    assert blocks == {str(small_cid): small}  # small want-have: the block itself
    assert presences == {str(large_cid): "HAVE", str(missing): "DONT_HAVE"}


async def test_legacy_1_0_0_peer_gets_blocks(daemon: MakeDaemon, short_tmp: Path) -> None:
    d = daemon().start()
    data = os.urandom(3000)
    f = short_tmp / "leaf"
    f.write_bytes(data)
    cid = CID.decode(d.cli("block", "put", "--cid-codec", "dag-pb", str(f)).stdout.strip())
    v0 = CID("base58btc", 0, "dag-pb", cid.digest)
    protocol = "/ipfs/bitswap/1.0.0"
    messages = await exchange(d, protocol, encode(Message(wants=(WantEntry(v0),)), protocol),
                              listen_for=protocol)
    assert [b for m in messages for _, b in m.blocks] == [data]


def _frame(body: bytes) -> bytes:
    return varint(len(body)) + body


async def test_fuzzed_input_never_hurts_the_node(daemon: MakeDaemon) -> None:
    d = daemon().start()
    rng = random.Random(7)
    before_rss = memory_kib(d.proc.pid)
    good = encode(Message(wants=tuple(
        WantEntry(CID("base32", 1, "raw", multihash.digest(bytes([i]), "sha2-256")))
        for i in range(20))))
    unsolicited = Message(blocks=tuple(
        (CID("base32", 1, "raw", multihash.digest(b, "sha2-256")), b)
        for b in (os.urandom(1000) for _ in range(5))))
    cases = [
        *(_frame(rng.randbytes(rng.randrange(1, 3000))) for _ in range(8)),  # random bodies
        _frame(good[2:][: len(good) // 2]),  # a truncated protobuf, framed
        good[: len(good) // 2],  # a frame cut short, then the stream ends
        b"\xff\xff\xff\xff\xff\xff\x01",  # a runaway varint length
        varint(5 * 1024 * 1024) + os.urandom(5 * 1024 * 1024),  # a 5 MiB frame
        varint(3 * 1024 * 1024) + b"\x0a",  # a huge announced length, then silence
        encode(unsolicited),  # blocks nobody asked for
        encode(unsolicited, "/ipfs/bitswap/1.0.0"),
    ]
    for payload in cases:
        await exchange(d, "/ipfs/bitswap/1.2.0", payload, wait=0.3)
        assert d.api("status")["Role"] == "worker"  # still serving
    stat = d.api("repo/stat")
    assert stat["NumObjects"] == 0  # nothing stored
    assert d.api("bitswap/stat")["BlocksReceived"] == 0
    assert (memory_kib(d.proc.pid) - before_rss) / 1024 < 64  # no runaway buffering
    assert "broke the protocol" in d.log()


# -- in-process: our Bitswap on a real py-libp2p host, a raw peer beside it ---------------------

class RawPeer:
    """A py-libp2p host that accepts Bitswap streams and records what it is sent (or, with
    ``reads=False``, accepts them and never reads)."""

    def __init__(self, reads: bool = True) -> None:
        self.host = make_host()
        self.reads = reads
        self.received: list[Message] = []
        self.got = trio.Event()
        for protocol in ("/ipfs/bitswap/1.2.0", "/ipfs/bitswap/1.1.0"):
            self.host.set_stream_handler(TProtocol(protocol), self._handler)

    async def _handler(self, stream: INetStream) -> None:
        if not self.reads:
            await trio.sleep_forever()
        decoder = FrameDecoder()
        with contextlib.suppress(Exception):
            while data := await stream.read(65536):
                for body in decoder.feed(data):
                    self.received.append(decode(body))
                    self.got.set()

    async def send(self, to: Any, message: Message) -> None:
        stream = await self.host.new_stream(to.get_id(), [TProtocol("/ipfs/bitswap/1.2.0")])
        await stream.write(encode(message))


@contextlib.asynccontextmanager
async def two_hosts() -> AsyncIterator[tuple[Any, RawPeer]]:
    ours, peer = make_host(), RawPeer()
    listen = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
    async with ours.run(listen), peer.host.run(listen):
        await ours.connect(PeerInfo(peer.host.get_id(), peer.host.get_addrs()))
        yield ours, peer


def missing(n: int) -> list[CID]:
    return [CID("base32", 1, "raw", multihash.digest(os.urandom(16), "sha2-256"))
            for _ in range(n)]


async def test_failed_and_cancelled_fetches_leave_nothing_wanted(tmp_path: Path) -> None:
    store = await TieredStore.open(tmp_path / "repo", StoreConfig(parquet_export=False))
    async with two_hosts() as (ours, _peer), trio.open_nursery() as nursery:
        bitswap = Bitswap(ours, lambda: store)
        await nursery.start(bitswap.run)
        for how in ("timeout", "cancelled"):
            first, *rest = missing(20)
            bitswap.prefetch(rest)  # as the exporter does with a file's children
            assert len(bitswap.wants.wants) == 19 and len(bitswap._waiters) == 19
            if how == "timeout":
                with pytest.raises(BlockUnavailableError):
                    await bitswap.fetch(first, timeout=1.0)
            else:
                with trio.move_on_after(1.0) as scope:  # the caller goes away
                    await bitswap.fetch(first)
                assert scope.cancelled_caught
            assert bitswap._waiters == {} and bitswap.wants.wants == {}, how
            assert bitswap.stat()["Wantlist"] == []
        nursery.cancel_scope.cancel()
    await store.close()


async def test_prefetch_never_wants_an_identity_cid(tmp_path: Path) -> None:
    """A DAG's identity children (inlined CIDs: the bytes are in the CID) are never asked
    of peers: the exporter's, a DAG walk's and a worker's prefetches passed them on, and the
    want stayed listed until the session went idle."""
    store = await TieredStore.open(tmp_path / "repo", StoreConfig(parquet_export=False))
    async with two_hosts() as (ours, _peer), trio.open_nursery() as nursery:
        bitswap = Bitswap(ours, lambda: store)
        await nursery.start(bitswap.run)
        inline = CID("base32", 1, "raw", multihash.wrap(b"tiny", "identity"))
        wanted, = missing(1)
        bitswap.prefetch([inline, wanted])
        assert list(bitswap.wants.wants) == [bytes(wanted.digest)]
        assert bytes(inline.digest) not in bitswap._waiters
        nursery.cancel_scope.cancel()
    await store.close()


async def test_wants_before_the_store_opens_are_answered_once_it_has(tmp_path: Path) -> None:
    store: TieredStore | None = None

    def not_open_yet() -> TieredStore:
        if store is None:
            raise ClosedNodeError("the block store is not open")
        return store

    async with two_hosts() as (ours, peer), trio.open_nursery() as nursery:
        bitswap = Bitswap(ours, not_open_yet)  # registers its handler now, as the node does
        absent, quiet = missing(2)
        await peer.send(ours, Message(wants=(
            WantEntry(absent, want_type=WantType.HAVE, send_dont_have=True),)))
        def wants() -> int:
            return len(bitswap.ledger.peer(peer.host.get_id()).wants)

        with trio.fail_after(20):
            while wants() < 1:
                await trio.sleep(0.05)
        assert not peer.received  # recorded, not answered (and nothing raised)
        await peer.send(ours, Message(wants=(WantEntry(quiet),)))  # still alive
        with trio.fail_after(20):
            while wants() < 2:
                await trio.sleep(0.05)
        assert wants() == 2
        store = await TieredStore.open(tmp_path / "repo", StoreConfig(parquet_export=False))
        await nursery.start(bitswap.run)
        with trio.fail_after(10):
            await peer.got.wait()
        await trio.sleep(0.5)
        presences = [p for m in peer.received for p in m.presences]
        assert presences == [(absent, Presence.DONT_HAVE)]  # quiet waits for the block
        nursery.cancel_scope.cancel()
    assert store is not None
    await store.close()


async def test_a_peer_that_stops_reading_is_cut_off_and_holds_nobody_up(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Shorter than py-libp2p's own 5 s wait for a window update, so ours is the one that fires;
    # one global build slot, which the slow peer must not keep.
    monkeypatch.setattr(network, "WRITE_TIMEOUT", 1.0)
    monkeypatch.setattr(network, "SEND_CONCURRENCY", 1)
    store = await TieredStore.open(tmp_path / "repo", StoreConfig(parquet_export=False))
    # More than py-libp2p's initial 4 MiB stream window, so writes to the slow peer stall.
    blocks = [os.urandom(100_000) for _ in range(60)]
    cids = [CID("base32", 1, "raw", multihash.digest(b, "sha2-256")) for b in blocks]
    for cid, data in zip(cids, blocks, strict=True):
        await store.put(cid, data)
    ours, slow, fast = make_host(), RawPeer(reads=False), RawPeer()
    listen = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
    async with ours.run(listen), slow.host.run(listen), fast.host.run(listen), \
            trio.open_nursery() as nursery:
        for peer in (slow, fast):
            await ours.connect(PeerInfo(peer.host.get_id(), peer.host.get_addrs()))
        bitswap = Bitswap(ours, lambda: store)
        await nursery.start(bitswap.run)
        wants = Message(wants=tuple(WantEntry(c) for c in cids))
        await slow.send(ours, wants)
        await trio.sleep(0.3)  # its sender is writing (and stuck) first
        started = trio.current_time()
        await fast.send(ours, wants)
        with trio.fail_after(30):
            while len({c for m in fast.received for c, _ in m.blocks}) < len(cids):
                await trio.sleep(0.05)
        took = trio.current_time() - started
        slow_ledger = bitswap.ledger.peers[slow.host.get_id()]
        with trio.fail_after(10):
            while slow_ledger.wants or slow_ledger.queue:
                await trio.sleep(0.05)
        print(f"\n6 MB to a reading peer beside one that stopped reading: {took:.2f} s; the "
              f"slow one was sent {slow_ledger.bytes_sent} bytes before it was cut off")
        assert slow_ledger.bytes_sent < 6_000_000
        assert {bytes(c): d for m in fast.received for c, d in m.blocks} == {
            bytes(c): d for c, d in zip(cids, blocks, strict=True)}
        nursery.cancel_scope.cancel()
    await store.close()


async def test_streams_per_peer_are_capped_and_trickled_messages_time_out(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MAX_INBOUND_STREAMS are read at once; the next MAX_WAITING_STREAMS wait unread for a
    slot (Kubo < 0.37 sends each answer on a new stream: resetting them lost blocks); beyond
    that they are reset. A trickled message times out, and frees its slot for a waiting one."""
    # Long enough that no message begun times out while the streams are still being opened
    # on a loaded machine (1 s did): the counts are read before the first deadline.
    monkeypatch.setattr(network, "FRAME_TIMEOUT", 5.0)
    monkeypatch.setattr(network, "MAX_WAITING_STREAMS", 2)
    store = await TieredStore.open(tmp_path / "repo", StoreConfig(parquet_export=False))
    async with two_hosts() as (ours, peer), trio.open_nursery() as nursery:
        bitswap = Bitswap(ours, lambda: store)
        await nursery.start(bitswap.run)
        me = peer.host.get_id()
        streams = []
        for _ in range(network.MAX_INBOUND_STREAMS + 2 + 3):
            with contextlib.suppress(Exception):  # those over both caps are reset at once
                stream = await peer.host.new_stream(ours.get_id(),
                                                    [TProtocol("/ipfs/bitswap/1.2.0")])
                await stream.write(varint(1000) + b"\x0a")  # a 1000-byte message begun
                streams.append(stream)
        with trio.fail_after(20):  # they hold from the last stream's open to the first deadline
            while (bitswap._inbound.get(me), len(bitswap._queued.get(me, ()))) != (
                    network.MAX_INBOUND_STREAMS, 2):
                await trio.sleep(0.05)
        # Trickling keeps none alive past the deadline of the message it began; the waiting
        # ones get their slots as the first ones time out, and time out in turn.
        with trio.fail_after(60):
            while me in bitswap._inbound or me in bitswap._queued:
                for stream in streams:
                    with contextlib.suppress(Exception):
                        await stream.write(b"\x00")
                await trio.sleep(0.3)
        # An honest stream still gets through afterwards.
        await _still_answers(peer, ours, missing(1)[0])
        nursery.cancel_scope.cancel()
    await store.close()


async def test_streams_over_the_cap_wait_and_lose_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As many one-message streams at once as may be read plus may wait (Kubo < 0.37 sends
    each answer on a new stream): every message is handled, none reset."""
    monkeypatch.setattr(network, "MAX_INBOUND_STREAMS", 2)
    store = await TieredStore.open(tmp_path / "repo", StoreConfig(parquet_export=False))
    absent = missing(network.MAX_INBOUND_STREAMS + network.MAX_WAITING_STREAMS)
    async with two_hosts() as (ours, peer), trio.open_nursery() as nursery:
        bitswap = Bitswap(ours, lambda: store)
        await nursery.start(bitswap.run)
        waited = 0
        wait_for_slot = bitswap._wait_for_slot

        async def counted(*args: Any) -> bool:
            nonlocal waited
            waited += 1
            return await wait_for_slot(*args)

        bitswap._wait_for_slot = counted  # type: ignore[method-assign]

        async def one(cid: CID) -> None:
            stream = await peer.host.new_stream(ours.get_id(), [TProtocol("/ipfs/bitswap/1.2.0")])
            await stream.write(encode(Message(wants=(
                WantEntry(cid, want_type=WantType.HAVE, send_dont_have=True),))))
            await stream.close()

        async with trio.open_nursery() as senders:
            for cid in absent:
                senders.start_soon(one, cid)
        with trio.fail_after(30):
            while len({bytes(c) for m in peer.received for c, _ in m.presences}) < len(absent):
                await trio.sleep(0.05)
        assert {bytes(c) for m in peer.received for c, _ in m.presences} == {
            bytes(c) for c in absent}
        print(f"\n{len(absent)} streams at once: {waited} waited for a slot, none reset")
        assert waited > 0
        assert not bitswap._queued and not bitswap._inbound
        nursery.cancel_scope.cancel()
    await store.close()


async def _still_answers(peer: RawPeer, ours: Any, absent: CID) -> None:
    """An honest want-have for a block we lack gets its DONT_HAVE."""
    await peer.send(ours, Message(wants=(
        WantEntry(absent, want_type=WantType.HAVE, send_dont_have=True),)))
    with trio.fail_after(10):
        await peer.got.wait()
    assert [p for m in peer.received for p in m.presences] == [(absent, Presence.DONT_HAVE)]


def _raw_block(data: bytes) -> CID:
    return CID("base32", 1, "raw", multihash.digest(data, "sha2-256"))


async def test_disk_errors_and_evicted_blocks_never_end_bitswap(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """EIO on a block's read or write, an unexpected error while building a message, and a
    block evicted to the remote tier: each peer gets an answer or nothing, Bitswap (run in
    this nursery: an escaping error would fail the test) keeps serving everyone."""
    good, bad, odd, evicted, late = (os.urandom(5000) for _ in range(5))
    cid = {name: _raw_block(data) for name, data in
           (("good", good), ("bad", bad), ("odd", odd), ("evicted", evicted), ("late", late))}
    # One file a block (no pack files): the read and write errors are DiskTier's.
    config = StoreConfig(parquet_export=False, pack_threshold=0)
    store = await TieredStore.open(tmp_path / "repo", config)
    for name, data in (("good", good), ("bad", bad), ("odd", odd), ("evicted", evicted)):
        await store.put(cid[name], data)
    await store.close()  # reopened: the memory tier is empty, reads go to the disk tier
    store = await TieredStore.open(tmp_path / "repo", config)
    disk = store._disk
    real_read, key_bad, key_odd = disk.read, bytes(cid["bad"].digest), bytes(cid["odd"].digest)

    def failing_read(key: bytes) -> bytes | None:
        if key == key_bad:
            raise OSError(errno.EIO, "Input/output error")
        if key == key_odd:
            raise RuntimeError("a bug nobody expected")
        return real_read(key)

    def failing_write(key: bytes, data: bytes | memoryview) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(disk, "read", failing_read)
    monkeypatch.setattr(disk, "write", failing_write)
    # The evicted block: known, but held by the remote tier, whose fetch would hang.
    monkeypatch.setattr(store, "is_remote", lambda c: to_cid(c) == cid["evicted"])
    real_get, gets = store.get, []

    async def recording_get(c: Any) -> bytes:
        gets.append(to_cid(c))
        return await real_get(c)

    monkeypatch.setattr(store, "get", recording_get)

    def blocks_of(peer: RawPeer) -> dict[CID, bytes]:
        return {c: d for m in peer.received for c, d in m.blocks}

    def presences_of(peer: RawPeer) -> dict[CID, Presence]:
        return {c: p for m in peer.received for c, p in m.presences}

    async with two_hosts() as (ours, peer), trio.open_nursery() as nursery:
        bitswap = Bitswap(ours, lambda: store)
        await nursery.start(bitswap.run)
        # Reading: EIO on one block is a DONT_HAVE (asked for), the others are served.
        await peer.send(ours, Message(wants=(
            WantEntry(cid["bad"], send_dont_have=True), WantEntry(cid["good"]),
            WantEntry(cid["evicted"], send_dont_have=True))))
        with trio.fail_after(10):
            while cid["good"] not in blocks_of(peer) or len(presences_of(peer)) < 2:
                await trio.sleep(0.05)
        assert presences_of(peer) == {cid["bad"]: Presence.DONT_HAVE,
                                      cid["evicted"]: Presence.DONT_HAVE}
        assert blocks_of(peer) == {cid["good"]: good}
        assert cid["evicted"] not in gets  # never fetched through the remote tier
        # An unexpected error while building: that peer's queue is dropped, the sender ends.
        await peer.send(ours, Message(wants=(WantEntry(cid["odd"]),)))
        with trio.fail_after(10):
            while bitswap._peers[peer.host.get_id()].running:
                await trio.sleep(0.05)
        assert not bitswap.ledger.has_work(peer.host.get_id())
        # Writing: a fetched block the disk refuses (EIO) fails that fetch, nothing else.
        fetched: list[BaseException] = []

        async def fetch_late() -> None:
            try:
                await bitswap.fetch(cid["late"], timeout=20)
            except Exception as exc:
                fetched.append(exc)

        nursery.start_soon(fetch_late)
        with trio.fail_after(10):
            while not any(w.cid == cid["late"] for m in peer.received for w in m.wants):
                await trio.sleep(0.05)
        await peer.send(ours, Message(blocks=((cid["late"], late),)))
        with trio.fail_after(10):
            while not fetched:
                await trio.sleep(0.05)
        assert isinstance(fetched[0], BlockNotFoundError)
        # Still serving: a second block read from the disk tier, after all of the above.
        monkeypatch.setattr(disk, "read", real_read)
        await peer.send(ours, Message(wants=(WantEntry(cid["odd"]),)))
        with trio.fail_after(10):
            while cid["odd"] not in blocks_of(peer):
                await trio.sleep(0.05)
        assert blocks_of(peer)[cid["odd"]] == odd
        nursery.cancel_scope.cancel()
    await store.close()


async def test_bytes_buffered_per_peer_are_capped_across_its_streams(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Scaled down (1 MiB for 8 MiB): each stream begins a 700 KB message and sends 600 KB of
    # it; the second one takes the peer over its budget and is reset, the first one is not.
    monkeypatch.setattr(network, "MAX_PEER_BUFFERED", 1 << 20)
    body = bytes_field(6, b"\0" * 700_000)  # a valid message (one unknown field) once whole
    framed = varint(len(body)) + body
    store = await TieredStore.open(tmp_path / "repo", StoreConfig(parquet_export=False))
    async with two_hosts() as (ours, peer), trio.open_nursery() as nursery:
        bitswap = Bitswap(ours, lambda: store)
        await nursery.start(bitswap.run)
        me = peer.host.get_id()
        streams = []
        for i in range(3):
            stream = await peer.host.new_stream(ours.get_id(), [TProtocol("/ipfs/bitswap/1.2.0")])
            with contextlib.suppress(Exception):  # those over the budget are reset
                await stream.write(framed[:600_000])
            streams.append(stream)
            with trio.fail_after(20):
                if i == 0:  # held whole before the next begins, so the next goes over
                    while bitswap._buffered.get(me, 0) < 600_000:
                        await trio.sleep(0.05)
                else:  # reset (or closed) by ours: the read ends instead of waiting
                    with contextlib.suppress(Exception):
                        while await stream.read(1024):
                            pass
        print(f"\nbuffered for the peer: {bitswap._buffered.get(me, 0)} bytes on "
              f"{bitswap._inbound.get(me, 0)} streams (limit {network.MAX_PEER_BUFFERED})")
        assert 0 < bitswap._buffered[me] <= network.MAX_PEER_BUFFERED
        assert bitswap._inbound[me] == 1  # the first; the other two went over and were reset
        # The first stream's message completes and is handled: nothing is left held.
        await streams[0].write(framed[600_000:])
        with trio.fail_after(10):
            while me in bitswap._buffered:
                await trio.sleep(0.05)
        # And an honest message still gets through.
        await _still_answers(peer, ours, missing(1)[0])
        nursery.cancel_scope.cancel()
    await store.close()
