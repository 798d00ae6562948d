"""The gateway's HTTP decisions as plain functions: response format, byte ranges, ETag
matching, Content-Type and Content-Disposition. No I/O; tested on their own."""

from __future__ import annotations

import mimetypes
import re
from dataclasses import dataclass
from urllib.parse import quote

RAW = "application/vnd.ipld.raw"
CAR = "application/vnd.ipld.car"
CAR_TYPE = "application/vnd.ipld.car; version=1; order=dfs; dups=n"
FORMATS = {"raw": RAW, "car": CAR}
#: Formats the path gateway names but we do not produce (tar, dag-json views, IPNS records).
UNSUPPORTED = {"tar": "application/x-tar", "dag-json": "application/vnd.ipld.dag-json",
               "dag-cbor": "application/vnd.ipld.dag-cbor", "json": "application/json",
               "cbor": "application/cbor", "ipns-record": "application/vnd.ipfs.ipns-record"}
#: Most ranges one request may ask for (each is a separate walk of the file).
MAX_RANGES = 32


class NegotiationError(ValueError):
    """The request asks for something we cannot answer: ``status`` says how (400/406)."""

    def __init__(self, message: str, status: int = 400) -> None:
        self.status = status
        super().__init__(message)


class RangeNotSatisfiable(ValueError):
    """No requested range overlaps the file (416)."""


@dataclass(frozen=True)
class CarParams:
    scope: str = "all"
    entity_bytes: str | None = None


def response_format(format_arg: str | None, accept: str | None) -> str | None:
    """"raw", "car", or None for a deserialized response. ``format`` wins over ``Accept``."""
    if format_arg:
        if format_arg in FORMATS:
            return format_arg
        if format_arg in UNSUPPORTED:
            raise NegotiationError(f"format={format_arg} is not supported by this gateway "
                                   "(raw and car are)", 406)
        raise NegotiationError(f"unknown format {format_arg!r} (use raw or car)")
    for media, params in _accepted(accept or ""):
        if media == RAW:
            return "raw"
        if media == CAR:
            version = params.get("version", "1")
            order = params.get("order", "dfs")
            dups = params.get("dups", "n")
            if version != "1" or order not in ("dfs", "unk") or dups != "n":
                raise NegotiationError(
                    f"only CARv1 with order=dfs and dups=n is produced (asked {media}; "
                    + "; ".join(f"{k}={v}" for k, v in params.items()) + ")", 406)
            return "car"
    return None


def _accepted(accept: str) -> list[tuple[str, dict[str, str]]]:
    """Accept's media types with their parameters, highest q first (ties: as listed)."""
    out: list[tuple[float, int, str, dict[str, str]]] = []
    for i, part in enumerate(accept.split(",")[:32]):
        pieces = [p.strip() for p in part.split(";")]
        params = {}
        for p in pieces[1:]:
            key, _, value = p.partition("=")
            params[key.strip().lower()] = value.strip().strip('"')
        try:
            q = float(params.pop("q", "1"))
        except ValueError:
            q = 1.0
        if q > 0 and pieces[0]:
            out.append((-q, i, pieces[0].lower(), params))
    return [(media, params) for _, _, media, params in sorted(out)]


def car_params(scope: str | None, entity_bytes: str | None) -> CarParams:
    if scope is not None and scope not in ("all", "entity", "block"):
        raise NegotiationError(f"dag-scope must be all, entity or block, got {scope!r}")
    if entity_bytes is not None and not re.fullmatch(r"-?\d{1,19}:(-?\d{1,19}|\*)",
                                                     entity_bytes):
        raise NegotiationError(f"entity-bytes must be from:to (integers, or * for the "
                               f"end), got {entity_bytes!r}")
    return CarParams(scope or "all", entity_bytes)


def parse_ranges(header: str | None, size: int) -> list[tuple[int, int]] | None:
    """``Range: bytes=...`` as [start, end) pairs within ``size``; None to send everything
    (no header, or one we do not understand, which RFC 9110 says to ignore).
    RangeNotSatisfiable when none overlaps the file."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or not spec.strip():
        return None
    out = []
    parts = spec.split(",")
    if len(parts) > MAX_RANGES:
        return None
    for part in parts:
        first, dash, last = part.strip().partition("-")
        if not dash or not (_digits(first) or _digits(last)):
            return None
        if len(first) > 19 or len(last) > 19 or (first and not _digits(first)) \
                or (last and not _digits(last)):
            return None
        if not first:  # the last N bytes
            n = int(last)
            if n == 0:
                continue
            out.append((max(0, size - n), size))
            continue
        start = int(first)
        end = size if not last else int(last) + 1
        if last and end <= start:
            return None  # invalid (last < first): ignore the header
        if start >= size:
            continue
        out.append((start, min(end, size)))
    if not out:
        raise RangeNotSatisfiable(f"no range of {header!r} is within the file's {size} bytes")
    return out


def _digits(text: str) -> bool:
    """ASCII digits only: str.isdigit() also takes "²" and other digits int() refuses."""
    return text.isascii() and text.isdigit()


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Weak comparison (RFC 9110 13.1.2), as If-None-Match uses."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    ours = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == ours for tag in if_none_match.split(","))


# Types Python's table may lack or get wrong on a bare system (no /etc/mime.types).
_EXTRA_TYPES = {
    ".csv": "text/csv", ".md": "text/markdown", ".json": "application/json",
    ".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm",
    ".svg": "image/svg+xml", ".webp": "image/webp", ".avif": "image/avif",
    ".parquet": "application/vnd.apache.parquet", ".car": CAR, ".webm": "video/webm",
    ".woff2": "font/woff2", ".toml": "application/toml", ".yaml": "application/yaml",
}
_MAGIC = [
    (b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"), (b"GIF89a", "image/gif"), (b"%PDF-", "application/pdf"),
    (b"PK\x03\x04", "application/zip"), (b"\x1f\x8b", "application/gzip"),
    (b"PAR1", "application/vnd.apache.parquet"), (b"\x00asm", "application/wasm"),
    (b"OggS", "audio/ogg"), (b"ID3", "audio/mpeg"), (b"wOF2", "font/woff2"),
    (b"BZh", "application/x-bzip2"), (b"\xfd7zXZ\x00", "application/x-xz"),
]


def content_type(name: str, head: bytes) -> str:
    """By the name's extension (as Kubo does), else sniffed from the first bytes."""
    dot = name.rfind(".")
    if dot > 0:
        ext = name[dot:].lower()
        known = _EXTRA_TYPES.get(ext) or mimetypes.types_map.get(ext)
        if known:
            return f"{known}; charset=utf-8" if known.startswith("text/") else known
    return sniff(head)


def sniff(head: bytes) -> str:
    """Magic bytes, then HTML/XML/SVG, then text or binary (a subset of WHATWG sniffing)."""
    for magic, media in _MAGIC:
        if head.startswith(magic):
            return media
    if head[:12].startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp":
        return "video/mp4"
    text = head.lstrip()[:256].lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "text/html; charset=utf-8"
    if text.startswith(b"<svg") or (text.startswith(b"<?xml") and b"<svg" in text):
        return "image/svg+xml"
    if text.startswith(b"<?xml"):
        return "text/xml; charset=utf-8"
    if _is_text(head):
        return "text/plain; charset=utf-8"
    return "application/octet-stream"


def _is_text(head: bytes) -> bool:
    if any(b in head for b in b"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0e\x0f\x1a\x1b"):
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3  # a character cut at the end of the sniffed bytes
    return True


def content_disposition(kind: str, filename: str | None) -> str:
    """``inline``/``attachment`` with the filename in ASCII and, if needed, RFC 8187 UTF-8."""
    if not filename:
        return kind
    ascii_name = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in filename)
    out = f'{kind}; filename="{ascii_name}"'
    if ascii_name != filename:
        out += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return out
