"""Content-defined chunking as Kubo does it: ``--chunker rabin[-min-avg-max]`` and ``buzhash``.

Both cut where a rolling hash of the last few bytes has its low bits all zero, within the
chunk-size bounds; the reference is boxo (Kubo's importer): ``chunker/rabin.go`` over
``whyrusleeping/chunker`` (a window of 16 bytes, Kubo's degree-53 polynomial, the low
``log2(avg)`` bits, the first ``min - 16`` bytes of a chunk never hashed) and
``chunker/buzhash.go`` (a window of 32 bytes, a fixed table, 128 KiB to 512 KiB, 17 bits).

Both hashes are linear over GF(2): the hash of a window is the XOR of one table value per
byte, the table depending on the byte's place in the window. So instead of a byte loop in
Python (tens of seconds for 64 MiB), a whole span is hashed at once at C speed:
``bytes.translate`` maps each byte to 8 bits of its table value, ``int.from_bytes`` turns
the span into one big integer (a byte per position), and XOR of the W shifted spans gives
the low 8 bits of every position's hash; only where those are zero (1 in 256) is the whole
hash computed byte by byte.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import BinaryIO

#: boxo's DefaultBlockSize: the average of ``rabin`` without sizes.
DEFAULT_BLOCK_SIZE = 256 * 1024
#: boxo's ChunkSizeLimit: a chunk plus its dag-pb framing must fit a 2 MiB block.
CHUNK_SIZE_LIMIT = 2 * 1024 * 1024 - 256
#: boxo's IpfsRabinPoly (an irreducible polynomial of degree 53).
KUBO_RABIN_POLY = 17437180132763653
RABIN_WINDOW = 16
BUZ_MIN, BUZ_MAX, BUZ_BITS, BUZ_WINDOW = 128 << 10, 512 << 10, 17, 32

# The buzhash byte table, data from the algorithm's specification in boxo (chunker/buzhash.go).
BUZ_TABLE = (
    0x6236e7d5, 0x10279b0b, 0x72818182, 0xdc526514, 0x2fd41e3d, 0x777ef8c8, 0x83ee5285, 0x2c8f3637,
    0x2f049c1a, 0x57df9791, 0x9207151f, 0x9b544818, 0x74eef658, 0x2028ca60, 0x0271d91a, 0x27ae587e,
    0xecf9fa5f, 0x236e71cd, 0xf43a8a2e, 0xbb13380, 0x9e57912c, 0x89a26cdb, 0x9fcf3d71, 0xa86da6f1,
    0x9c49f376, 0x346aecc7, 0xf094a9ee, 0xea99e9cb, 0xb01713c6, 0x88acffb, 0x2960a0fb, 0x344a626c,
    0x7ff22a46, 0x6d7a1aa5, 0x6a714916, 0x41d454ca, 0x8325b830, 0xb65f563, 0x447fecca, 0xf9d0ea5e,
    0xc1d9d3d4, 0xcb5ec574, 0x55aae902, 0x86edc0e7, 0xd3a9e33, 0xe70dc1e1, 0xe3c5f639, 0x9b43140a,
    0xc6490ac5, 0x5e4030fb, 0x8e976dd5, 0xa87468ea, 0xf830ef6f, 0xcc1ed5a5, 0x611f4e78, 0xddd11905,
    0xf2613904, 0x566c67b9, 0x905a5ccc, 0x7b37b3a4, 0x4b53898a, 0x6b8fd29d, 0xaad81575, 0x511be414,
    0x3cfac1e7, 0x8029a179, 0xd40efeda, 0x7380e02, 0xdc9beffd, 0x2d049082, 0x99bc7831, 0xff5002a8,
    0x21ce7646, 0x1cd049b, 0xf43994f, 0xc3c6c5a5, 0xbbda5f50, 0xec15ec7, 0x9adb19b6, 0xc1e80b9,
    0xb9b52968, 0xae162419, 0x2542b405, 0x91a42e9d, 0x6be0f668, 0x6ed7a6b9, 0xbc2777b4, 0xe162ce56,
    0x4266aad5, 0x60fdb704, 0x66f832a5, 0x9595f6ca, 0xfee83ced, 0x55228d99, 0x12bf0e28, 0x66896459,
    0x789afda, 0x282baa8, 0x2367a343, 0x591491b0, 0x2ff1a4b1, 0x410739b6, 0x9b7055a0, 0x2e0eb229,
    0x24fc8252, 0x3327d3df, 0xb0782669, 0x1c62e069, 0x7f503101, 0xf50593ae, 0xd9eb275d, 0xe00eb678,
    0x5917ccde, 0x97b9660a, 0xdd06202d, 0xed229e22, 0xa9c735bf, 0xd6316fe6, 0x6fc72e4c, 0x206dfa2,
    0xd6b15c5a, 0x69d87b49, 0x9c97745, 0x13445d61, 0x35a975aa, 0x859aa9b9, 0x65380013, 0xd1fb6391,
    0xc29255fd, 0x784a3b91, 0xb9e74c26, 0x63ce4d40, 0xc07cbe9e, 0xe6e4529e, 0xfb3632f, 0x9438d9c9,
    0x682f94a8, 0xf8fd4611, 0x257ec1ed, 0x475ce3d6, 0x60ee2db1, 0x2afab002, 0x2b9e4878, 0x86b340de,
    0x1482fdca, 0xfe41b3bf, 0xd4a412b0, 0xe09db98c, 0xc1af5d53, 0x7e55e25f, 0xd3346b38, 0xb7a12cbd,
    0x9c6827ba, 0x71f78bee, 0x8c3a0f52, 0x150491b0, 0xf26de912, 0x233e3a4e, 0xd309ebba, 0xa0a9e0ff,
    0xca2b5921, 0xeeb9893c, 0x33829e88, 0x9870cc2a, 0x23c4b9d0, 0xeba32ea3, 0xbdac4d22, 0x3bc8c44c,
    0x1e8d0397, 0xf9327735, 0x783b009f, 0xeb83742, 0x2621dc71, 0xed017d03, 0x5c760aa1, 0x5a69814b,
    0x96e3047f, 0xa93c9cde, 0x615c86f5, 0xb4322aa5, 0x4225534d, 0xd2e2de3, 0xccfccc4b, 0xbac2a57,
    0xf0a06d04, 0xbc78d737, 0xf2d1f766, 0xf5a7953c, 0xbcdfda85, 0x5213b7d5, 0xbce8a328, 0xd38f5f18,
    0xdb094244, 0xfe571253, 0x317fa7ee, 0x4a324f43, 0x3ffc39d9, 0x51b3fa8e, 0x7a4bee9f, 0x78bbc682,
    0x9f5c0350, 0x2fe286c, 0x245ab686, 0xed6bf7d7, 0xac4988a, 0x3fe010fa, 0xc65fe369, 0xa45749cb,
    0x2b84e537, 0xde9ff363, 0x20540f9a, 0xaa8c9b34, 0x5bc476b3, 0x1d574bd7, 0x929100ad, 0x4721de4d,
    0x27df1b05, 0x58b18546, 0xb7e76764, 0xdf904e58, 0x97af57a1, 0xbd4dc433, 0xa6256dfd, 0xf63998f3,
    0xf1e05833, 0xe20acf26, 0xf57fd9d6, 0x90300b4d, 0x89df4290, 0x68d01cbc, 0xcf893ee3, 0xcc42a046,
    0x778e181b, 0x67265c76, 0xe981a4c4, 0x82991da1, 0x708f7294, 0xe6e2ae62, 0xfc441870, 0x95e1b0b6,
    0x445f825, 0x5a93b47f, 0x5e9cf4be, 0x84da71e7, 0x9d9582b0, 0x9bf835ef, 0x591f61e2, 0x43325985,
    0x5d2de32e, 0x8d8fbf0f, 0x95b30f38, 0x7ad5b6e, 0x4e934edf, 0x3cd4990e, 0x9053e259, 0x5c41857d,
)


@dataclass(frozen=True)
class Chunker:
    """A parsed ``--chunker``: ``size`` (fixed ``size`` bytes), ``rabin`` (``min``/``avg``/
    ``max``) or ``buzhash``. ``poly`` is the rabin polynomial: Kubo's unless a test sets
    another (ipfs-unixfs-importer's rabin is this algorithm with a different polynomial)."""

    kind: str
    size: int = 0
    min: int = 0
    avg: int = 0
    max: int = 0
    poly: int = KUBO_RABIN_POLY

    def __str__(self) -> str:
        if self.kind == "size":
            return f"size-{self.size}"
        if self.kind == "rabin":
            return f"rabin-{self.min}-{self.avg}-{self.max}"
        return "buzhash"


def _number(part: str, label: str) -> int:
    sub = part.split(":")
    if len(sub) > 1 and sub[0] != label:
        raise ValueError(f"incorrect chunker format: expected label {label!r} before "
                         f"{sub[-1]!r}")
    if not sub[-1].isdigit():
        raise ValueError(f"invalid chunker size {sub[-1]!r}: expected a number of bytes")
    return int(sub[-1])


def parse_chunker(spec: str) -> Chunker:
    """Kubo's ``--chunker`` values (boxo chunker/parse.go): ``size-N``; ``rabin`` (average
    256 KiB), ``rabin-AVG`` (min AVG/3, max AVG*1.5), ``rabin-MIN-AVG-MAX`` (each optionally
    labelled ``min:``/``avg:``/``max:``); ``buzhash`` (anything after a dash ignored, as
    boxo). ValueError says what is wrong."""
    if spec in ("", "default"):
        return Chunker("size", size=DEFAULT_BLOCK_SIZE)
    kind, _, _ = spec.partition("-")
    parts = spec.split("-")
    if kind == "size":
        if len(parts) != 2:
            raise ValueError("incorrect chunker format (expected size-{size})")
        size = _number(parts[1], "size")
        if size <= 0:
            raise ValueError("chunker size must be greater than 0")
        if size > CHUNK_SIZE_LIMIT:
            raise ValueError("chunker parameters may not exceed the maximum chunk size of "
                             f"{CHUNK_SIZE_LIMIT}")
        return Chunker("size", size=size)
    if kind == "buzhash":
        return Chunker("buzhash", min=BUZ_MIN, avg=BUZ_MIN * 2, max=BUZ_MAX)
    if kind != "rabin":
        raise ValueError(f"unrecognized chunker option: {spec} (expected size-N, "
                         "rabin[-min-avg-max] or buzhash)")
    if len(parts) in (1, 2):
        avg = DEFAULT_BLOCK_SIZE if len(parts) == 1 else _number(parts[1], "avg")
        if int(avg * 1.5) > CHUNK_SIZE_LIMIT:
            raise ValueError("chunker parameters may not exceed the maximum chunk size of "
                             f"{CHUNK_SIZE_LIMIT}")
        low, high = avg // 3, avg + avg // 2
    elif len(parts) == 4:
        low, avg, high = (_number(p, label) for p, label in
                          zip(parts[1:], ("min", "avg", "max"), strict=True))
        if low >= avg:
            raise ValueError("incorrect format: rabin-min must be smaller than rabin-avg")
        if avg >= high:
            raise ValueError("incorrect format: rabin-avg must be smaller than rabin-max")
        if high > CHUNK_SIZE_LIMIT:
            raise ValueError("chunker parameters may not exceed the maximum chunk size of "
                             f"{CHUNK_SIZE_LIMIT}")
    else:
        raise ValueError("incorrect format (expected 'rabin' 'rabin-[avg]' or "
                         "'rabin-[min]-[avg]-[max]')")
    # boxo checks this for the 4-part form only; below 16 its chunker would skip a negative
    # count (unsigned: never cut), so a small rabin-AVG is refused here as well.
    if low < RABIN_WINDOW:
        raise ValueError("rabin min must be greater than 16")
    return Chunker("rabin", min=low, avg=avg, max=high)


def _pol_mod(x: int, p: int) -> int:
    dp = p.bit_length()
    while x.bit_length() >= dp:
        x ^= p << (x.bit_length() - dp)
    return x


def _rotl32(x: int, n: int) -> int:
    n %= 32
    return ((x << n) | (x >> (32 - n))) & 0xFFFFFFFF


class WindowHash:
    """Positions where the hash of the ``window`` bytes before them has its low ``bits``
    zero, for a hash that is the XOR of ``tables[j][byte at place j]``.

    One vectorised pass over the low 8 bits finds the 1-in-256 positions that may qualify;
    each of those is then checked exactly (a few microseconds), which costs less than
    carrying every 8-bit lane through the whole span."""

    def __init__(self, tables: list[list[int]], bits: int) -> None:
        self.mask = (1 << bits) - 1
        self.window = len(tables)
        self._tables = [[v & self.mask for v in t] for t in tables]
        self._low = [bytes(t[b] & 0xFF for b in range(256)) for t in self._tables]

    def value(self, buf: bytes | bytearray, p: int) -> int:
        """The masked hash of buf[p - window:p]."""
        h = 0
        for j, table in enumerate(self._tables, start=p - self.window):
            h ^= table[buf[j]]
        return h

    def first(self, buf: bytes | bytearray, lo: int, hi: int) -> int:
        """The first position p in [lo, hi) (hashing buf[p - window:p]), or -1."""
        n = hi - lo
        if n <= 0:
            return -1
        base = lo - self.window
        assert base >= 0
        acc = 0
        for j, table in enumerate(self._low):
            acc ^= int.from_bytes(bytes(buf[base + j:base + j + n]).translate(table), "little")
        low = acc.to_bytes(n, "little")
        hit = low.find(0)
        while hit >= 0:
            if self.value(buf, lo + hit) == 0:
                return lo + hit
            hit = low.find(0, hit + 1)
        return -1


@lru_cache(maxsize=8)
def rabin_hash(poly: int, avg: int) -> WindowHash:
    """whyrusleeping/chunker's digest of the last 16 bytes: sum b_j x^(8(15-j)) mod poly."""
    tables = [[_pol_mod(b << (8 * (RABIN_WINDOW - 1 - j)), poly) for b in range(256)]
              for j in range(RABIN_WINDOW)]
    return WindowHash(tables, avg.bit_length() - 1)  # floor(log2(avg)) bits


@lru_cache(maxsize=1)
def buzhash_hash() -> WindowHash:
    """boxo's buzhash state: XOR of rotl(table[b_j], 31 - j) over the last 32 bytes."""
    tables = [[_rotl32(BUZ_TABLE[b], BUZ_WINDOW - 1 - j) for b in range(256)]
              for j in range(BUZ_WINDOW)]
    return WindowHash(tables, BUZ_BITS)


READ_SIZE = 1 << 20
SCAN_STEP = 64 * 1024


def split(stream: BinaryIO, chunker: Chunker) -> Iterator[bytes]:
    """The chunks of ``stream`` as Kubo cuts them. For both content-defined chunkers a chunk
    is the remainder when fewer than ``min`` bytes are left; otherwise it ends at the first
    position p in [min, L) whose window hash is zero in the masked bits, else at L, where L
    is ``max`` or the bytes left if fewer (rabin tests p = L too, which cuts at L anyway)."""
    if chunker.kind == "size":
        yield from fixed(stream, chunker.size)
        return
    hasher = (rabin_hash(chunker.poly, chunker.avg) if chunker.kind == "rabin"
              else buzhash_hash())
    buf = bytearray()
    start = 0
    eof = False
    while True:
        while not eof and len(buf) - start < chunker.max:
            more = stream.read(READ_SIZE)
            if not more:
                eof = True
            buf += more
        left = len(buf) - start
        if left == 0:
            return
        if left < chunker.min:
            yield bytes(buf[start:])
            return
        end = start + min(chunker.max, left)
        cut = end
        lo = start + chunker.min
        while lo < end:
            hi = min(lo + SCAN_STEP, end)
            hit = hasher.first(buf, lo, hi)
            if hit >= 0:
                cut = hit
                break
            lo = hi
        yield bytes(buf[start:cut])
        start = cut
        if start >= READ_SIZE:
            del buf[:start]
            start = 0


def fixed(stream: BinaryIO, size: int) -> Iterator[bytes]:
    """Exactly ``size`` bytes at a time (the last chunk may be shorter)."""
    while True:
        buf = stream.read(size)
        if not buf:
            return
        while len(buf) < size:
            more = stream.read(size - len(buf))
            if not more:
                break
            buf += more
        yield buf
        if len(buf) < size:
            return
