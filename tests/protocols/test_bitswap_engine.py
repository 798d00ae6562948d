"""Bitswap's plain parts: codec, ledger (serving) and want manager (fetching). No sockets."""

from __future__ import annotations

import contextlib
import os

import pytest
from multiformats import CID, multihash

from ipfs_kit_node.protocols.bitswap.codec import (
    MAX_MESSAGE_BYTES,
    FrameDecoder,
    Message,
    Presence,
    ProtocolViolation,
    WantEntry,
    WantType,
    cid_prefix,
    decode,
    encode,
)
from ipfs_kit_node.protocols.bitswap.ledger import Ledger, TaskKind
from ipfs_kit_node.protocols.bitswap.wantlist import WantManager


def raw(data: bytes) -> CID:
    return CID("base32", 1, "raw", multihash.digest(data, "sha2-256"))


def v0(data: bytes) -> CID:
    return CID("base58btc", 0, "dag-pb", multihash.digest(data, "sha2-256"))


# -- codec -------------------------------------------------------------------------------------

def test_round_trip_all_fields() -> None:
    a, b = b"block a", b"block b"
    message = Message(
        wants=(WantEntry(raw(a), priority=-3, want_type=WantType.HAVE, send_dont_have=True),
               WantEntry(v0(b), cancel=True)),
        full=True, blocks=((raw(a), a), (v0(b), b)),
        presences=((raw(a), Presence.HAVE), (v0(b), Presence.DONT_HAVE)), pending_bytes=77)
    (body,) = FrameDecoder().feed(encode(message))
    assert decode(body) == message


def test_presence_type_defaults_to_have() -> None:
    # proto3 leaves the default enum value off the wire, as Helia does for HAVE.
    cid = bytes(raw(b"x"))
    body = b"\x22" + _len(b"\x0a" + _len(cid) + cid) + b"\x0a" + _len(cid) + cid
    assert decode(body).presences == ((raw(b"x"), Presence.HAVE),)


def test_cidv0_payload_prefix_is_not_empty() -> None:
    assert cid_prefix(v0(b"x")) == b"\x00\x70\x12\x20"
    assert cid_prefix(raw(b"x")) == b"\x01\x55\x12\x20"


def test_legacy_1_0_0_blocks_field() -> None:
    data = b"old style"
    (body,) = FrameDecoder().feed(encode(Message(blocks=((v0(data), data),)),
                                         "/ipfs/bitswap/1.0.0"))
    assert decode(body).blocks == ((v0(data), data),)


def test_frames_split_anywhere() -> None:
    stream = b"".join(encode(Message(presences=((raw(bytes([i])), Presence.HAVE),)))
                      for i in range(50))
    decoder, bodies = FrameDecoder(), []
    for i in range(0, len(stream), 7):
        bodies += decoder.feed(stream[i:i + 7])
    assert len(bodies) == 50 and decoder.buffered == 0


@pytest.mark.parametrize("garbage", [b"\xff" * 20, b"\x0a\x05\x0a", b"\x1a\x02\x0a\x00",
                                     b"\x0a\x03\x0a\x01\xff", os.urandom(64)])
def test_malformed_bodies_raise_protocol_violation(garbage: bytes) -> None:
    # Random bytes may also happen to parse; they must never raise anything else.
    with contextlib.suppress(ProtocolViolation):
        decode(garbage)


def test_oversized_and_runaway_lengths() -> None:
    with pytest.raises(ProtocolViolation, match="limit"):
        FrameDecoder().feed(b"\x81\x80\x80\x04")  # 8 MiB
    with pytest.raises(ProtocolViolation, match="longer than 4 bytes"):
        FrameDecoder().feed(b"\xff\xff\xff\xff\xff\x01")
    assert FrameDecoder().feed(encode(Message(full=True))[:1]) == []  # just incomplete
    with pytest.raises(ValueError):
        encode(Message(blocks=tuple((raw(bytes([i])) , b"x" * 2**20) for i in range(5))))
    assert MAX_MESSAGE_BYTES == 4 * 1024 * 1024


def test_oversized_block_in_payload() -> None:
    big = b"x" * (2 * 1024 * 1024 + 1)
    (body,) = FrameDecoder(max_bytes=8 * 2**20).feed(
        b"".join([encode(Message(blocks=((raw(b"y"), b"y"),)))[:0],
                  _frame(b"\x1a" + _len(b"\x0a\x04\x01\x55\x12\x20\x12" + _len(big) + big)
                         + b"\x0a\x04\x01\x55\x12\x20\x12" + _len(big) + big)]))
    with pytest.raises(ProtocolViolation, match="block of"):
        decode(body)


def _len(b: bytes) -> bytes:
    from ipfs_kit_node.codecs.varint import encode as varint

    return varint(len(b))


def _frame(body: bytes) -> bytes:
    return _len(body) + body


# -- ledger ------------------------------------------------------------------------------------

def test_kubo_answer_rules() -> None:
    ledger = Ledger()
    small, large, missing, quiet = raw(b"s"), raw(b"l"), raw(b"m"), raw(b"q")
    wants = ledger.message_received("p", Message(wants=(
        WantEntry(small, want_type=WantType.HAVE),
        WantEntry(large, want_type=WantType.HAVE),
        WantEntry(missing, want_type=WantType.BLOCK, send_dont_have=True),
        WantEntry(quiet, want_type=WantType.BLOCK),
    )))
    sizes = {small: 1024, large: 1025, missing: None, quiet: None}
    for want in wants:
        ledger.evaluate("p", want, sizes[want.cid])
    tasks, pending = ledger.next_batch("p", 10**6)
    kinds = {t.cid: t.kind for t in tasks}
    assert kinds == {small: TaskKind.BLOCK, large: TaskKind.HAVE, missing: TaskKind.DONT_HAVE}
    assert pending == 0
    # The quiet want waits; the block arriving later is served.
    assert ledger.wanted_by(quiet) == [("p", wants[3])]
    ledger.evaluate("p", wants[3], 5000)
    assert [t.kind for t in ledger.next_batch("p", 10**6)[0]] == [TaskKind.BLOCK]


def test_cancel_and_full_wantlist() -> None:
    ledger = Ledger()
    a, b = raw(b"a"), raw(b"b")
    for want in ledger.message_received("p", Message(wants=(WantEntry(a), WantEntry(b)))):
        ledger.evaluate("p", want, 100)
    ledger.message_received("p", Message(wants=(WantEntry(a, cancel=True),)))
    assert [t.cid for t in ledger.next_batch("p", 10**6)[0]] == [b]
    ledger.message_received("p", Message(wants=(WantEntry(a),)))
    ledger.message_received("p", Message(full=True))
    assert ledger.wanted_by(a) == []


def test_batches_respect_max_bytes_and_carry_pending() -> None:
    ledger = Ledger()
    cids = [raw(bytes([i])) for i in range(10)]
    for want in ledger.message_received("p", Message(wants=tuple(WantEntry(c) for c in cids))):
        ledger.evaluate("p", want, 300_000)
    tasks, pending = ledger.next_batch("p", 1_000_000)
    assert len(tasks) == 3 and pending == 7 * 300_000


# -- want manager ------------------------------------------------------------------------------

def test_discovery_then_targeted_want_blocks() -> None:
    wm = WantManager(window=2)
    for peer in ("a", "b"):
        wm.add_peer(peer, 0)
    root = raw(b"root")
    out = wm.want(root, 0)
    assert sorted(p for p, e in out) == ["a", "b"]
    assert all(e.want_type is WantType.HAVE and e.send_dont_have for _, e in out)
    out = wm.on_presence("b", root, Presence.HAVE, 0.1)
    assert out == [("b", WantEntry(root, want_type=WantType.BLOCK, send_dont_have=True))]
    wanted, out = wm.on_block("b", root, 0.2)
    assert wanted and ("a", WantEntry(root, cancel=True)) in out
    # Later wants go to the session peer, two at a time, the rest wait.
    leaves = [raw(bytes([i])) for i in range(5)]
    sent = [o for leaf in leaves for o in wm.want(leaf, 0.3)]
    assert [p for p, _ in sent] == ["b", "b"]
    wanted, out = wm.on_block("b", leaves[0], 0.4)
    assert wanted and [p for p, e in out if not e.cancel] == ["b"]


def test_dont_have_moves_to_another_peer_and_timeouts_retry() -> None:
    wm = WantManager(retry_after=1.0)
    for peer in ("a", "b"):
        wm.add_peer(peer, 0)
    cid = raw(b"x")
    wm.want(cid, 0)
    wm.on_presence("a", cid, Presence.HAVE, 0)
    wm.on_presence("b", cid, Presence.HAVE, 0)
    first = next(iter(wm.wants[bytes(cid.digest)].asked))
    other = "b" if first == "a" else "a"
    out = wm.on_presence(first, cid, Presence.DONT_HAVE, 0.1)
    assert [p for p, _ in out] == [other]
    assert wm.tick(5.0) == []  # silence counts as "not now"...
    out = wm.tick(11.0)  # ...until the rebroadcast: the peer that said HAVE is asked again
    assert out == [(other, WantEntry(cid, want_type=WantType.BLOCK, send_dont_have=True))]


def test_unsolicited_blocks_are_not_wanted() -> None:
    wm = WantManager()
    wm.add_peer("a", 0)
    assert wm.on_block("a", raw(b"nobody asked"), 0) == (False, [])
    assert wm.duplicates == 1


def test_peer_leaving_reassigns() -> None:
    wm = WantManager()
    for peer in ("a", "b"):
        wm.add_peer(peer, 0)
    cid = raw(b"x")
    wm.want(cid, 0)
    wm.on_presence("a", cid, Presence.HAVE, 0)
    wm.on_presence("b", cid, Presence.HAVE, 0)
    asked = next(iter(wm.wants[bytes(cid.digest)].asked))
    out = wm.remove_peer(asked, 1)
    assert [p for p, e in out] == ["b" if asked == "a" else "a"]
