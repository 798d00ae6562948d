"""What an import is made of: its parameters (``ImportParams``, with Kubo's implications and
profiles), the blocks and entries it yields, how a block gets its CID, and UnixFS 1.5
metadata. Shared by the importer and the HAMT writer (hamt.py), which builds on these and
not on the importer."""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..codecs.varint import encode as varint
from .chunker import Chunker, parse_chunker

if TYPE_CHECKING:  # CID objects only on demand: multiformats costs `add` ~25 ms to import
    from multiformats import CID

#: Hash functions ``--hash`` accepts: name -> multihash code.
HASHES = {
    "sha2-256": 0x12,
    "sha2-512": 0x13,
    "sha3-256": 0x16,
    "sha3-512": 0x14,
    "blake2b-256": 0xB220,
    "blake2b-512": 0xB240,
    "blake3": 0x1E,
}
#: Kubo's largest inline (identity) CID payload (verifcid.DefaultMaxIdentityDigestSize).
MAX_INLINE_LIMIT = 128
SHARD_STRATEGIES = ("links-bytes", "block-bytes")


def _digest(name: str, data: bytes) -> bytes:
    if name == "sha2-256":
        return hashlib.sha256(data).digest()
    if name == "blake3":
        import blake3

        return blake3.blake3(data).digest()
    if name.startswith("blake2b-"):
        return hashlib.blake2b(data, digest_size=int(name[8:]) // 8).digest()
    return hashlib.new(name.replace("sha2-", "sha").replace("sha3-", "sha3_"), data).digest()


@dataclass(frozen=True)
class ImportParams:
    """How ``add`` builds DAGs; field names follow Kubo's options (``--cid-version`` is
    ``cid_version``...). Build from CLI/RPC options with ``ImportParams.kubo``."""

    cid_version: int = 0
    raw_leaves: bool = False
    chunk_size: int = 256 * 1024  # --chunker size-N
    chunker: Chunker | None = None  # --chunker rabin/buzhash (None: size-chunk_size)
    max_links: int = 174  # children per file node
    hash: str = "sha2-256"
    trickle: bool = False
    inline: bool = False  # identity CIDs for blocks of at most inline_limit bytes
    inline_limit: int = 32
    hidden: bool = False  # include dot-files found in folders
    wrap_with_directory: bool = False
    preserve_mode: bool = False
    preserve_mtime: bool = False
    mode: int | None = None  # --mode: stored on every entry
    mtime: tuple[int, int] | None = None  # --mtime/--mtime-nsecs
    shard_threshold: int = 256 * 1024  # a folder over this becomes a HAMT (0: never)
    shard_strategy: str = "links-bytes"  # how the folder's size is estimated
    shard_fanout: int = 256

    def __post_init__(self) -> None:
        if self.cid_version not in (0, 1):
            raise ValueError("cid_version must be 0 or 1")
        if self.hash not in HASHES:
            raise ValueError(f"unrecognized hash function {self.hash!r} (one of "
                             f"{', '.join(HASHES)})")
        if self.cid_version == 0 and self.hash != "sha2-256":
            raise ValueError("CIDv0 only supports sha2-256")
        if not 1 <= self.chunk_size <= 2 * 1024 * 1024 - 256:
            raise ValueError("chunk size must be between 1 byte and 2 MiB - 256 B")
        if self.chunker is not None and self.chunker.kind == "size":
            raise ValueError("a fixed-size chunker is given as chunk_size")
        if self.max_links < 2:
            raise ValueError("max links must be at least 2")
        if not 0 <= self.inline_limit <= MAX_INLINE_LIMIT:
            raise ValueError(f"inline limit must be between 0 and {MAX_INLINE_LIMIT} bytes")
        if self.shard_strategy not in SHARD_STRATEGIES:
            raise ValueError(f"shard strategy must be one of {', '.join(SHARD_STRATEGIES)}")
        if self.shard_fanout not in (8, 16, 32, 64, 128, 256, 512, 1024):
            raise ValueError("HAMT fanout must be a power of 2 between 8 and 1024")
        if self.mode is not None and not 0 <= self.mode <= 0o7777:
            raise ValueError(f"mode {self.mode:o} is not a permission mode (0 to 7777 octal)")
        if self.mtime is not None and not 0 <= self.mtime[1] < 10**9:
            raise ValueError("mtime nanoseconds must be between 0 and 999999999")

    @property
    def has_metadata(self) -> bool:
        return (self.preserve_mode or self.preserve_mtime or self.mode is not None
                or self.mtime is not None)

    @classmethod
    def kubo(cls, *, profile: str | None = None, cid_version: int | None = None,
             raw_leaves: bool | None = None, chunker: str | None = None,
             hash: str | None = None, trickle: bool | None = None,
             max_links: int | None = None, inline: bool = False, inline_limit: int = 32,
             hidden: bool = False, wrap_with_directory: bool = False,
             preserve_mode: bool = False, preserve_mtime: bool = False,
             mode: int | None = None, mtime: int | None = None, mtime_nsecs: int | None = None,
             ) -> ImportParams:
        """Parameters for ``ipfs add`` options, None meaning "not given", with Kubo's rules:
        a hash other than sha2-256 implies CIDv1 (refused with an explicit CIDv0); CIDv1
        implies raw leaves unless raw_leaves is given; mode/mtime turn raw leaves off (refused
        when raw_leaves=True is explicit). ValueError says what is wrong."""
        if profile is not None and profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r} (one of {', '.join(PROFILES)})")
        base = PROFILES[profile] if profile else KUBO_DEFAULT
        version = cid_version
        hash_name = (hash or base.hash).lower()
        if hash_name != "sha2-256":
            if version == 0:
                raise ValueError("CIDv0 only supports sha2-256")
            version = 1
        raw = raw_leaves
        if raw is None and not profile and version == 1:
            raw = True  # Kubo: CIDv1 means raw leaves unless told otherwise
        if mtime_nsecs and mtime is None:
            raise ValueError("--mtime-nsecs needs --mtime")
        spec = parse_chunker(chunker) if chunker else None
        metadata = preserve_mode or preserve_mtime or mode is not None or mtime is not None
        if metadata:
            if raw_leaves:
                raise ValueError("--raw-leaves can't be used with UnixFS metadata like mode "
                                 "or modification time")
            raw = False
        return cls(
            cid_version=base.cid_version if version is None else version,
            raw_leaves=base.raw_leaves if raw is None else raw,
            chunk_size=spec.size if spec and spec.kind == "size" else base.chunk_size,
            chunker=spec if spec and spec.kind != "size" else None,
            max_links=max_links or base.max_links, hash=hash_name,
            trickle=base.trickle if trickle is None else trickle, inline=inline,
            inline_limit=inline_limit, hidden=hidden, wrap_with_directory=wrap_with_directory,
            preserve_mode=preserve_mode, preserve_mtime=preserve_mtime, mode=mode,
            mtime=None if mtime is None else (mtime, mtime_nsecs or 0),
            shard_threshold=base.shard_threshold, shard_strategy=base.shard_strategy)


PROFILES = {
    # Kubo's `ipfs add` default.
    "unixfs-v0-2015": ImportParams(cid_version=0, raw_leaves=False, chunk_size=256 * 1024,
                                   max_links=174, shard_strategy="links-bytes"),
    # IPIP-0499; Helia's default.
    "unixfs-v1-2025": ImportParams(cid_version=1, raw_leaves=True, chunk_size=1024 * 1024,
                                   max_links=1024, shard_strategy="block-bytes"),
}
KUBO_DEFAULT = PROFILES["unixfs-v0-2015"]


@dataclass(frozen=True)
class Block:
    """A block as made: its CID in binary form (a CID object only on demand: building one
    per block costs more than hashing it) and its bytes."""

    cid_bytes: bytes
    data: bytes

    @property
    def cid(self) -> CID:
        from ..cid import to_cid

        return to_cid(self.cid_bytes)


@dataclass(frozen=True)
class Entry:
    """A finished file, folder or symlink: its root, DAG size (Tsize) and content size."""

    cid_bytes: bytes
    tsize: int
    filesize: int

    @property
    def cid(self) -> CID:
        from ..cid import to_cid

        return to_cid(self.cid_bytes)


DAG_PB, RAW = 0x70, 0x55


def cid_bytes_for(data: bytes, codec: int, params: ImportParams) -> bytes:
    """The binary CID ``params`` give a block: identity when inlined, v0 only for dag-pb."""
    if params.inline and len(data) <= params.inline_limit:
        return b"\x01" + varint(codec) + b"\x00" + varint(len(data)) + data
    if params.hash == "sha2-256":
        mh = b"\x12\x20" + hashlib.sha256(data).digest()
        if params.cid_version == 0 and codec == DAG_PB:
            return mh
    else:
        digest = _digest(params.hash, data)
        mh = varint(HASHES[params.hash]) + varint(len(digest)) + digest
    return b"\x01" + varint(codec) + mh


_cid_bytes = cid_bytes_for


@dataclass(frozen=True)
class Meta:
    """UnixFS 1.5 metadata for one entry's root node (None: not stored)."""

    mode: int | None = None
    mtime: tuple[int, int] | None = None

    def __bool__(self) -> bool:
        return self.mode is not None or self.mtime is not None


NO_META = Meta()


def meta_for(st: os.stat_result | None, params: ImportParams) -> Meta:
    """What ``params`` store for a file with status ``st`` (--mode/--mtime win)."""
    mode = params.mode
    if mode is None and params.preserve_mode and st is not None:
        mode = stat.S_IMODE(st.st_mode) or None
    mtime = params.mtime
    if mtime is None and params.preserve_mtime and st is not None:
        mtime = divmod(st.st_mtime_ns, 10**9)
    return Meta(mode, mtime)
