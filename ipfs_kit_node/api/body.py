"""Request bodies: through h11, or read off the socket without it (a sans-IO ``BodyFraming``
says which bytes are body data), and the open files a client passes on the unix socket."""

from __future__ import annotations

import array
import math
import os
import re
import socket
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import h11
import trio

from ..errors import ApiError
from . import limits
from .fasthead import _BLANK_LINE
from .limits import BODY_READ_SIZE, MAX_BODY_BYTES, MAX_HEADER_BYTES, READ_SIZE
from .router import _BodyTimeout


async def _discard_body(conn: h11.Connection, stream: trio.abc.Stream,
                        limit: int = MAX_BODY_BYTES) -> bool:
    """Read and drop a refused request's body (up to ``limit``); False if the connection
    cannot be reused."""
    seen = 0
    while conn.their_state is h11.SEND_BODY:
        part = await _next_event(conn, stream)
        if isinstance(part, h11.Data):
            seen += len(part.data)
            if seen > limit:
                return False
        elif not isinstance(part, h11.EndOfMessage):
            return False
    return True


async def _body_chunks(conn: h11.Connection, stream: trio.abc.Stream
                       ) -> AsyncGenerator[bytes, None]:
    while True:
        try:
            event = await _next_event(conn, stream, read_size=BODY_READ_SIZE)
        except trio.TooSlowError:
            raise _BodyTimeout() from None
        if isinstance(event, h11.Data):
            yield bytes(event.data)
        elif isinstance(event, h11.EndOfMessage):
            return
        else:
            raise h11.RemoteProtocolError("connection closed in the middle of the body")


#: Framing headers of a request: the twin connection of a body read here sees none of them.
_FRAMING = (b"content-length", b"transfer-encoding", b"expect")


def _fast_body_setup(conn: h11.Connection, stream: trio.abc.Stream, event: h11.Request
                     ) -> tuple[h11.Connection, BodyFraming] | None:
    """(twin connection, framing) to read this request's body without h11, or None to leave
    it to h11 (not a socket, not HTTP/1.1, no body to read)."""
    if not isinstance(stream, trio.SocketStream) or conn.their_state is not h11.SEND_BODY \
            or event.http_version != b"1.1":
        return None
    headers = {name: value for name, value in event.headers}
    if b"transfer-encoding" in headers:  # h11 refused any coding but chunked
        framing = BodyFraming(None)
    else:
        framing = BodyFraming(int(headers.get(b"content-length", b"0")))
    twin = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
    twin.receive_data(b"".join([
        event.method, b" ", event.target, b" HTTP/1.1\r\n",
        *(b"%s: %s\r\n" % (name, value) for name, value in event.headers
          if name not in _FRAMING),
        b"content-length: 0\r\n\r\n"]))
    if not isinstance(twin.next_event(), h11.Request) or \
            not isinstance(twin.next_event(), h11.EndOfMessage):
        return None
    return twin, framing


def _fd_receiver(stream: trio.SocketStream, framing: BodyFraming, pending: bytes
                 ) -> Callable[[int], Awaitable[list[int]]] | None:
    """How a route on the unix socket takes the descriptors sent with a one-byte body.

    Only ``recvmsg`` gets them: a plain read of that byte would make the kernel close them,
    so the client sends it after our 100 Continue and nothing has read it yet (``pending``
    empty). The byte counts as the body read (``framing``)."""
    sock = stream.socket
    if sock.family != trio.socket.AF_UNIX:
        return None

    async def receive_fds(limit: int) -> list[int]:
        if pending or framing.chunked or framing.remaining != 1:
            raise ApiError("send the file descriptor as a one-byte body after the daemon's "
                           "100 Continue (Expect: 100-continue)", 400)
        try:
            with trio.fail_after(limits.READ_TIMEOUT):
                data, ancillary, flags, _ = await sock.recvmsg(
                    1, socket.CMSG_SPACE(4 * limit), socket.MSG_CMSG_CLOEXEC)
        except trio.TooSlowError:
            raise _BodyTimeout() from None
        fds: list[int] = []
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds += array.array("i", payload[:len(payload) - len(payload) % 4])
        if not data:
            raise h11.RemoteProtocolError("connection closed in the middle of the body")
        framing.parse(bytearray(data), 0, len(data))
        if not fds or len(fds) > limit or flags & socket.MSG_CTRUNC:
            for fd in fds:
                os.close(fd)
            raise ApiError(f"expected 1 to {limit} open file descriptors with the request, "
                           f"got {len(fds)}{' and more' if flags & socket.MSG_CTRUNC else ''}",
                           400)
        return fds

    return receive_fds


_CHUNK_HEAD = re.compile(rb"([0-9A-Fa-f]{1,20})(?:;[^\r\n]*)?[ \t]*")
#: A chunk's data up to this size is handed on whole, in one piece, when it is not all in
#: yet: an uploader's block then reaches the frame decoder as one bytes object it keeps.
HOLD_CHUNK = 1024 * 1024
#: Chunk data pieces under this size are joined into one piece with their neighbours.
SMALL_PIECE = 64 * 1024


class BodyFraming:
    """Sans-IO reader of a request body's framing (Content-Length, or chunked as RFC 9112
    with trailers skipped): ``parse`` says which spans of a buffer are body data.
    ``length`` None: chunked."""

    def __init__(self, length: int | None) -> None:
        self.chunked = length is None
        self.remaining = length or 0  # data bytes left of the body, or of the current chunk
        self.size = 0  # of the current chunk
        self.crlf = 0  # bytes of the CRLF behind a chunk's data still to skip
        self.trailer = False
        self.done = length == 0

    def parse(self, buf: bytearray, start: int, end: int
              ) -> tuple[list[tuple[int, int]], int]:
        """(spans of data in ``buf[start:end]``, where parsing stopped); the caller keeps
        ``buf[stop:end]`` and adds to it. Raises h11.RemoteProtocolError on a bad framing."""
        spans: list[tuple[int, int]] = []
        pos = start
        while pos < end and not self.done:
            if self.remaining:
                if (self.chunked and self.remaining == self.size <= HOLD_CHUNK
                        and end - pos < self.remaining):
                    break  # the whole chunk in one piece once it is in
                n = min(self.remaining, end - pos)
                spans.append((pos, pos + n))
                pos += n
                self.remaining -= n
                if not self.remaining:
                    if self.chunked:
                        self.crlf = 2
                    else:
                        self.done = True
            elif self.crlf:
                n = min(self.crlf, end - pos)
                if buf[pos:pos + n] != b"\r\n"[2 - self.crlf:2 - self.crlf + n]:
                    raise h11.RemoteProtocolError("malformed chunk footer")
                pos += n
                self.crlf -= n
            elif self.trailer:  # ends where h11 ends it: an empty line, CRLF or bare LF
                if buf[pos:pos + 1] == b"\n":
                    pos += 1
                elif end - pos < 2:
                    break
                elif buf[pos:pos + 2] == b"\r\n":
                    pos += 2
                else:
                    blank = _BLANK_LINE.search(buf, pos, end)
                    if blank is None:
                        if end - pos > MAX_HEADER_BYTES:
                            raise h11.RemoteProtocolError("chunked trailer too long")
                        break
                    _check_trailer(bytes(buf[pos:blank.end()]))
                    pos = blank.end()
                self.done = True
            else:
                found = buf.find(b"\r\n", pos, end)
                if found < 0:
                    if end - pos > 1024:
                        raise h11.RemoteProtocolError("chunk header too long")
                    break
                match = _CHUNK_HEAD.fullmatch(buf, pos, found)
                if match is None:
                    raise h11.RemoteProtocolError(
                        f"illegal chunk header: {bytes(buf[pos:min(found, pos + 40)])!r}")
                self.size = self.remaining = int(match[1], 16)
                pos = found + 2
                self.trailer = not self.size
        return spans, pos


#: A request whose trailer the chunked parser checks through h11 (trailers are rare).
_TRAILER_PROBE = (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"0\r\n")


def _check_trailer(block: bytes) -> None:
    """h11.RemoteProtocolError unless h11 accepts ``block`` as a chunked body's trailer."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(_TRAILER_PROBE + block)
    while not isinstance(event := conn.next_event(), h11.EndOfMessage):
        if event is h11.NEED_DATA:
            raise h11.RemoteProtocolError("malformed chunked trailer")


#: The receive buffer of a streamed body starts this big (a sized one at its length and some,
#: if less), grows to hold a whole held chunk, and doubles while recvs fill it, up to
#: ``BODY_BUFFER``: a client that stalls after its head holds 64 KiB, not 2 MiB (100 such
#: took 96 -> 298 MiB of RSS); a fast upload reaches 2 MiB reads after five recvs.
BODY_BUFFER_START = 64 * 1024
BODY_BUFFER = 2 * BODY_READ_SIZE
#: Free bytes wanted behind what the buffer holds before a recv.
BODY_BUFFER_ROOM = 4096


async def _socket_body(stream: trio.SocketStream, framing: BodyFraming, pending: bytes,
                       leftover: list[bytes]) -> AsyncGenerator[bytes, None]:
    """A request body received into one reused buffer and handed on as bytes, one copy out
    of it per piece; the bytes behind the body (a pipelined request) go to ``leftover``."""
    size = BODY_BUFFER_START if framing.chunked else \
        min(BODY_BUFFER_START, framing.remaining + BODY_BUFFER_ROOM)
    buf = bytearray(max(size, len(pending)))
    view = memoryview(buf)
    buf[:len(pending)] = pending
    start, end = 0, len(pending)
    filled = False  # the last recv filled all the room it had: the client sends fast
    try:
        while True:
            spans, start = framing.parse(buf, start, end)
            small: list[memoryview] = []
            for a, b in spans:
                if b - a < SMALL_PIECE:
                    small.append(view[a:b])
                    continue
                if small:
                    yield b"".join(small)
                    small = []
                yield bytes(view[a:b])
            if small:
                yield b"".join(small)
            if framing.done:
                leftover.append(bytes(view[start:end]))
                return
            if start == end:
                start = end = 0
            elif len(buf) - end < SMALL_PIECE or start + framing.remaining > len(buf):
                tail = bytes(view[start:end])  # a held chunk, or a cut header: to the front
                buf[:len(tail)] = tail
                start, end = 0, len(tail)
            held = framing.chunked and 0 < framing.remaining == framing.size <= HOLD_CHUNK
            # bytes the buffer must hold from ``start``: a held chunk whole, else some room
            need = framing.remaining + 2 if held else end - start + BODY_BUFFER_ROOM
            if start + need > len(buf) or (filled and len(buf) < BODY_BUFFER):
                grown = bytearray(max(need, min(2 * len(buf), BODY_BUFFER)))
                grown[:end - start] = view[start:end]
                view.release()
                buf, view = grown, memoryview(grown)
                start, end = 0, end - start
            try:
                with trio.fail_after(limits.READ_TIMEOUT):
                    got = await stream.socket.recv_into(view[end:])
            except trio.TooSlowError:
                raise _BodyTimeout() from None
            if not got:
                raise h11.RemoteProtocolError("connection closed in the middle of the body")
            filled = end + got == len(buf)
            end += got
    finally:
        view.release()


async def _next_event(conn: h11.Connection, stream: trio.abc.Stream,
                      timeout: float | None = None, read_size: int = READ_SIZE) -> Any:
    """h11's next event, receiving as needed; each receive waits at most ``timeout``
    (``READ_TIMEOUT`` when None, read at the call)."""
    if timeout is None:
        timeout = limits.READ_TIMEOUT
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        if timeout == math.inf:  # the caller's own scope bounds the wait
            data = await stream.receive_some(read_size)
        else:
            with trio.fail_after(timeout):
                data = await stream.receive_some(read_size)
        conn.receive_data(data)  # b"" marks end of stream
