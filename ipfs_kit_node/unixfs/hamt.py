"""Writing HAMT-sharded folders exactly as boxo (Kubo) and ipfs-unixfs-importer do.

When a folder shards: its flat node's size is estimated and compared with the threshold
(256 KiB); over it, the folder is a HAMT. The Kubo profile (``links-bytes``) estimates from
the links alone, name bytes + CID bytes each; ``unixfs-v1-2025`` (``block-bytes``) uses the
encoded block's exact size.

The layout is canonical (the same names give the same DAG whatever their order): each shard
has ``fanout`` slots (256); an entry's slot at depth d is the d-th group of log2(fanout) bits of
its name's hash, murmur3-x64-128 keeping the first 64 bits (h1) read most significant bit first
(after 64 bits the name with the depth byte appended is hashed again, as hamt-sharding does).
A slot with one entry links it as ``%02X`` slot + name; a slot with several links a sub-shard
named by the slot alone. Each shard node is UnixFS ``{Type: HAMTShard, Data: bitfield of
used slots (big-endian, leading zero bytes dropped), hashType: 0x22, fanout}``, its links in
slot order; mode/mtime only on the root shard.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import mmh3

from ..codecs.dagpb import PBLink
from ..codecs.dagpb import encode as encode_pb
from .data import HAMT_SHARD, UnixFSData
from .params import DAG_PB, NO_META, Block, Entry, ImportParams, Meta, cid_bytes_for

MURMUR3_X64_64 = 0x22


def _varint_len(n: int) -> int:
    return max(1, (n.bit_length() + 6) // 7)


def _link_size(name_len: int, cid_len: int, tsize: int) -> int:
    """Bytes a PBLink {Hash, Name, Tsize} takes in its dag-pb node, field header included."""
    body = (1 + _varint_len(cid_len) + cid_len + 1 + _varint_len(name_len) + name_len
            + 1 + _varint_len(tsize))
    return 1 + _varint_len(body) + body


def needs_shard(entries: Mapping[str, Entry], unixfs: UnixFSData, params: ImportParams
                ) -> bool:
    """Whether a folder with these entries passes the profile's threshold."""
    if params.shard_threshold <= 0:
        return False
    if params.shard_strategy == "links-bytes":
        size = sum(len(n.encode("utf-8")) + len(e.cid_bytes) for n, e in entries.items())
    else:
        data = unixfs.encode()
        size = 1 + _varint_len(len(data)) + len(data) + sum(
            _link_size(len(n.encode("utf-8")), len(e.cid_bytes), e.tsize)
            for n, e in entries.items())
    return size > params.shard_threshold


@dataclass
class _Item:
    name: str
    key: bytes
    entry: Entry
    hashes: list[int]

    def index(self, depth: int, bits: int) -> int:
        """Bits [depth * bits, (depth + 1) * bits) of the name's endless hash stream."""
        start, end = depth * bits, (depth + 1) * bits
        while len(self.hashes) * 64 < end:
            extra = bytes((len(self.hashes),)) if self.hashes else b""
            self.hashes.append(mmh3.hash64(self.key + extra, 0, True, False)[0])
        first, last = start // 64, (end - 1) // 64
        stream = 0
        for h in self.hashes[first:last + 1]:
            stream = stream << 64 | h
        span = (last - first + 1) * 64
        return (stream >> (span - (end - first * 64))) & ((1 << bits) - 1)


def build_shard(entries: Mapping[str, Entry], params: ImportParams, meta: Meta = NO_META
                ) -> tuple[list[Block], Entry]:
    """Every block of the HAMT (sub-shards before their parents, the root last) and the
    root's Entry (filesize 0: the caller knows the folder's content size)."""
    items = [_Item(n, n.encode("utf-8"), e, []) for n, e in entries.items()]
    blocks: list[Block] = []
    root = _shard(items, 0, params, meta, blocks)
    return blocks, root


def _shard(items: list[_Item], depth: int, params: ImportParams, meta: Meta,
           out: list[Block]) -> Entry:
    fanout = params.shard_fanout
    bits = fanout.bit_length() - 1
    width = len(f"{fanout - 1:X}")
    if depth * bits > 8 * 4096:
        raise ValueError("HAMT too deep: names with identical hashes")
    slots: dict[int, list[_Item]] = {}
    for item in items:
        slots.setdefault(item.index(depth, bits), []).append(item)
    links: list[PBLink] = []
    bitfield = 0
    for slot in sorted(slots):
        bitfield |= 1 << slot
        group = slots[slot]
        label = f"{slot:0{width}X}"
        if len(group) == 1:
            item = group[0]
            links.append(PBLink(item.entry.cid_bytes, label + item.name, item.entry.tsize))
        else:
            child = _shard(group, depth + 1, params, NO_META, out)
            links.append(PBLink(child.cid_bytes, label, child.tsize))
    data = bitfield.to_bytes(max(1, (bitfield.bit_length() + 7) // 8), "big")
    unixfs = UnixFSData(HAMT_SHARD, data, hash_type=MURMUR3_X64_64, fanout=fanout,
                        mode=meta.mode, mtime=meta.mtime)
    encoded = encode_pb(links, unixfs.encode())
    block = Block(cid_bytes_for(encoded, DAG_PB, params), encoded)
    out.append(block)
    return Entry(block.cid_bytes, len(encoded) + sum(link.tsize or 0 for link in links), 0)
