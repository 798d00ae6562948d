"""HTTP/1.1 for the sync client, sans-IO: a request's bytes and a reader of the answers on one
connection (status line and headers, then a body framed by Content-Length, chunked with
trailers, or running to the close).

Why not h11, which the daemon's server and AsyncClient use: importing it, with the dataclasses
and typing it pulls in, took 26 ms of the ~85 ms a CLI command took in all (Python alone starts
in 11 ms here), against a target of 100 ms for any command. The client speaks to one server and
needs only this much of RFC 9112; tests/client/test_h1.py checks the reader against h11 on
every split of the same bytes.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing itself costs a CLI command ~4 ms
if TYPE_CHECKING:
    from collections.abc import Sequence

MAX_HEAD = 64 * 1024  # a status line and headers longer than this are refused
MAX_LINE = 4 * 1024  # a chunk-size line or a trailer line
CRLF = b"\r\n"
CHUNK_END = b"0\r\n\r\n"

# Reader states.
HEAD, LENGTH, CHUNK_SIZE, CHUNK_DATA, CHUNK_CRLF, TRAILERS, UNTIL_CLOSE, CLOSED = range(8)


class ProtocolError(Exception):
    """The answer is not HTTP/1.1 we can read; ``in_body``: it broke off inside a body."""

    def __init__(self, message: str, *, in_body: bool = False) -> None:
        super().__init__(message)
        self.in_body = in_body


class Head:
    """A response's status line and headers (names lower-cased, as h11 gives them)."""

    __slots__ = ("headers", "http_version", "status")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]],
                 http_version: bytes) -> None:
        self.status = status
        self.headers = headers
        self.http_version = http_version


class End:
    """The end of a response's body, with the chunked trailers (if any)."""

    __slots__ = ("trailers",)

    def __init__(self, trailers: list[tuple[bytes, bytes]]) -> None:
        self.trailers = trailers


#: next_event's answer when the connection closed where no response had begun.
CONNECTION_CLOSED = object()


def request_bytes(method: str, target: str, headers: Sequence[tuple[str, str]]) -> bytes:
    """The request line and headers; a CR, LF or NUL in any of them is refused (the header
    would end early and the rest be read as another)."""
    lines = [f"{method} {target} HTTP/1.1", *(f"{name}: {value}" for name, value in headers)]
    for line in lines:
        if "\r" in line or "\n" in line or "\0" in line:
            raise ValueError(f"a request line or header holds CR, LF or NUL: {line[:60]!r}")
    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n"


def chunk_head(size: int) -> bytes:
    return b"%x\r\n" % size


class ResponseReader:
    """Responses on one connection, in turn: ``receive`` what the socket gave (``b""`` when
    it closed), then ``next_event`` until it returns None (more bytes needed). Events: Head,
    body ``bytes``, End, or CONNECTION_CLOSED (closed before a response began)."""

    def __init__(self, buffered: bytes = b"") -> None:
        self._buf = bytearray(buffered)
        self._pos = 0
        self._eof = False
        self.state = HEAD
        self._remaining = 0  # bytes left of the body (LENGTH) or of the chunk (CHUNK_DATA)
        self._trailers: list[tuple[bytes, bytes]] = []
        self.keep_alive = True  # False once an answer says the connection ends with it
        self.in_response = False  # a Head was given and its End not yet
        self._started = False  # some of the current body was given
        self.interim = 0  # interim answers (100 Continue) skipped so far

    def receive(self, data: bytes) -> None:
        if not data:
            self._eof = True
            return
        if self._pos == len(self._buf):
            self._buf.clear()
            self._pos = 0
        elif self._pos > 1 << 20:
            del self._buf[:self._pos]
            self._pos = 0
        self._buf += data

    @property
    def at_chunked_body(self) -> bool:
        """A chunked body begins here, none of it read yet (copy_to may take over)."""
        return self.state == CHUNK_SIZE and self.in_response and not self._started

    def take_unparsed(self) -> bytes:
        """Hand the bytes received but not read over (to copy_to's own chunked reader)."""
        rest = bytes(self._buf[self._pos:])
        self._buf.clear()
        self._pos = 0
        return rest

    def next_event(self) -> object | None:
        state = self.state
        if state == HEAD:
            while True:
                start = self._pos
                event = self._head()
                if event is not None or self._pos == start:
                    return event
        if state in (LENGTH, CHUNK_DATA):
            return self._data()
        if state == CHUNK_SIZE:
            return self._chunk_size()
        if state == CHUNK_CRLF:
            if len(self._buf) - self._pos < 2:
                self._need("a chunk's end")
                return None
            if self._buf[self._pos:self._pos + 2] != CRLF:
                raise ProtocolError("no CRLF after a chunk")
            self._pos += 2
            self.state = CHUNK_SIZE
            return self._chunk_size()
        if state == TRAILERS:
            return self._trailer()
        if state == UNTIL_CLOSE:
            if self._pos < len(self._buf):
                return self._take(len(self._buf) - self._pos)
            if self._eof:
                self.state = CLOSED
                return self._end()
            return None
        return CONNECTION_CLOSED  # CLOSED: the answer ran to the close

    # -- internals ---------------------------------------------------------------------------

    def _need(self, what: str) -> None:
        """More bytes are needed; if they never come (the connection closed), the answer
        broke off inside ``what``."""
        if self._eof:
            raise ProtocolError(f"the connection closed inside {what}",
                                in_body=self.in_response)

    def _take(self, n: int) -> bytes:
        self._started = True
        data = bytes(self._buf[self._pos:self._pos + n])
        self._pos += n
        return data

    def _end(self) -> End:
        trailers, self._trailers = self._trailers, []
        self.in_response = False
        if self.state != CLOSED:
            self.state = HEAD if self.keep_alive else CLOSED
        return End(trailers)

    def _data(self) -> object | None:
        if not self._remaining:
            if self.state == CHUNK_DATA:
                self.state = CHUNK_CRLF
                return self.next_event()
            return self._end()
        available = len(self._buf) - self._pos
        if not available:
            self._need("a body")
            return None
        n = min(available, self._remaining)
        self._remaining -= n
        return self._take(n)

    def _line(self, limit: int, what: str) -> bytes | None:
        end = self._buf.find(CRLF, self._pos, self._pos + limit + 2)
        if end < 0:
            if len(self._buf) - self._pos > limit:
                raise ProtocolError(f"{what} is over {limit} bytes")
            self._need(what)
            return None
        line = bytes(self._buf[self._pos:end])
        self._pos = end + 2
        return line

    def _chunk_size(self) -> object | None:
        line = self._line(MAX_LINE, "a chunk-size line")
        if line is None:
            return None
        digits = line.split(b";", 1)[0].strip()
        if not digits or len(digits) > 16 or digits.lower().strip(b"0123456789abcdef"):
            raise ProtocolError(f"bad chunk-size line {line[:40]!r}")
        size = int(digits, 16)
        if size:
            self._remaining = size
            self.state = CHUNK_DATA
            return self._data()
        self.state = TRAILERS
        return self._trailer()

    def _trailer(self) -> object | None:
        while True:
            line = self._line(MAX_LINE, "the trailers")
            if line is None:
                return None
            if not line:
                return self._end()
            self._trailers.append(_header(line))

    def _head(self) -> object | None:
        end = self._buf.find(b"\r\n\r\n", self._pos, self._pos + MAX_HEAD + 4)
        if end < 0:
            if len(self._buf) - self._pos > MAX_HEAD:
                raise ProtocolError(f"the status line and headers are over {MAX_HEAD} bytes")
            if self._eof:
                if self._pos == len(self._buf):
                    self.state = CLOSED
                    return CONNECTION_CLOSED
                raise ProtocolError("the connection closed inside the headers")
            return None
        lines = bytes(self._buf[self._pos:end]).split(CRLF)
        self._pos = end + 4
        version, status = _status_line(lines[0])
        headers = [_header(line) for line in lines[1:]]
        if 100 <= status < 200:  # an interim answer (100 Continue): the real one follows
            self.interim += 1
            return None  # next_event is called again (a loop, not recursion: any number)
        self._frame(status, version, headers)
        self.in_response = True
        self._started = False
        self._trailers = []
        return Head(status, headers, version)  # no body (LENGTH, 0 left): End comes next

    def _frame(self, status: int, version: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        coding = [v for n, v in headers if n == b"transfer-encoding"]
        lengths = {v.strip() for n, v in headers if n == b"content-length"}
        connection = b",".join(v for n, v in headers if n == b"connection").lower()
        if version == b"1.0" or b"close" in connection:
            self.keep_alive = False
        if status in (204, 304):
            self.state, self._remaining = LENGTH, 0
        elif coding:
            if [c.strip() for c in b",".join(coding).lower().split(b",")] != [b"chunked"]:
                raise ProtocolError(f"unsupported transfer-encoding {b','.join(coding)!r}")
            self.state = CHUNK_SIZE
        elif lengths:
            if len(lengths) > 1 or not all(c in b"0123456789" for c in next(iter(lengths))) \
                    or not next(iter(lengths)):
                raise ProtocolError(f"bad content-length {sorted(lengths)!r}")
            self.state, self._remaining = LENGTH, int(next(iter(lengths)))
        else:
            self.state = UNTIL_CLOSE
            self.keep_alive = False


def _status_line(line: bytes) -> tuple[bytes, int]:
    parts = line.split(b" ", 2)
    if len(parts) < 2 or parts[0] not in (b"HTTP/1.1", b"HTTP/1.0") or len(parts[1]) != 3 \
            or not parts[1].isdigit():
        raise ProtocolError(f"bad status line {line[:60]!r}")
    return parts[0][5:], int(parts[1])


#: RFC 9110's token characters: what a header name may hold (as h11 checks).
_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _header(line: bytes) -> tuple[bytes, bytes]:
    name, sep, value = line.partition(b":")
    if not sep or not name or not _TOKEN.issuperset(name):
        raise ProtocolError(f"bad header line {line[:60]!r}")
    return name.lower(), value.strip(b" \t")
