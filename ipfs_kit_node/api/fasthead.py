"""The kept-answer loop's own reading of a plain GET or HEAD (and writing of its whole answer),
without h11, which cost about half of such a request's CPU; anything else is left to h11."""

from __future__ import annotations

import re

from .router import Response

#: A request line and header fields the kept-answer loop parses itself (RFC 9112 as h11
#: reads it, narrowed: printable ASCII targets, no obsolete line folding).
_REQUEST_LINE = re.compile(rb"(GET|HEAD) ([!-~]+) HTTP/1\.1")
_FIELD = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*"
                    rb"((?:[\x21-\x7e\x80-\xff]+(?:[ \t]+[\x21-\x7e\x80-\xff]+)*)?)[ \t]*")
_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE = re.compile(r"(?:[\x21-\x7e\x80-\xff]+(?:[ \t]+[\x21-\x7e\x80-\xff]+)*)?")
#: Request headers that change how a request is framed or the connection kept: h11 handles
#: those requests.
_LEFT_TO_H11 = frozenset(("content-length", "transfer-encoding", "expect", "connection",
                          "upgrade", "te", "trailer"))


#: Where h11 ends a request head: the first blank line, CRLF or bare LF.
_BLANK_LINE = re.compile(rb"\n\r?\n")
#: Bytes a request's method (a token) may start with.
_TOKEN_BYTES = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                         b"abcdefghijklmnopqrstuvwxyz")


def _head_end(buf: bytearray, start: int = 0) -> int | None:
    """Where the first request head in ``buf`` ends, as h11 would read it: the offset of its
    closing CRLF CRLF, -1 while none has arrived, or None when h11 must read it now: a head
    ending in a bare LF (h11 answers it), or a first byte no method starts with (h11 refuses
    one under 0x21, such as a TLS ClientHello's, at once; waiting for a CRLF CRLF that never
    comes held such a connection until the idle timeout). ``start``: no blank line begins
    before it (the bytes searched already)."""
    if buf and buf[0] not in _TOKEN_BYTES:
        return None
    blank = _BLANK_LINE.search(buf, start)
    if blank is None:
        return -1
    at = blank.start()
    return at - 1 if at >= 1 and buf[at - 1:at + 3] == b"\r\n\r\n" else None


def _simple_head(head: bytes) -> tuple[str, str, tuple[tuple[str, str], ...]] | None:
    """(method, target, headers with lower-case names) of a GET or HEAD over HTTP/1.1 with no
    body and one Host, or None for anything else (h11 then reads it, and refuses what is
    malformed)."""
    lines = head.split(b"\r\n")
    first = _REQUEST_LINE.fullmatch(lines[0])
    if first is None:
        return None
    headers = []
    hosts = 0
    for line in lines[1:]:
        field_ = _FIELD.fullmatch(line)
        if field_ is None:
            return None
        name = field_[1].decode("ascii").lower()
        if name in _LEFT_TO_H11:
            return None
        hosts += name == "host"
        headers.append((name, field_[2].decode("latin-1")))
    if hosts != 1:
        return None
    return first[1].decode("ascii"), first[2].decode("ascii"), tuple(headers)


def _response_head(response: Response) -> bytes | None:
    """The status line and headers h11 would write for a whole (bytes) answer kept alive,
    or None if a header is not one h11 would send."""
    assert isinstance(response.body, bytes)
    out = [b"HTTP/1.1 %d \r\n" % response.status]
    for name, value in (("content-type", response.content_type), *response.headers,
                        ("content-length", str(len(response.body)))):
        if not _VALUE.fullmatch(value) or not _NAME.fullmatch(name):
            return None
        out.append(b"%s: %s\r\n" % (name.encode("ascii"), value.encode("latin-1")))
    out.append(b"\r\n")
    return b"".join(out)
