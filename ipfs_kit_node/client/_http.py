"""The sync client's HTTP/1.1: our sans-IO reader (_h1.py) over a blocking socket.

Why not httpx here: importing httpx (and httpcore, which imports trio when installed) costs
more than the whole 100 ms a CLI command may take; why not h11 (as the daemon's server and
AsyncClient): see _h1.py, it cost a quarter of a command. Why not http.client: it drops
chunked trailers, and Kubo's RPC reports a stream that failed part-way in an
``X-Stream-Error`` trailer.

Connections are kept alive and pooled (one per thread in use), each operation bounded by the
client's timeout.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
from collections.abc import Iterable, Iterator

from ..errors import ApiError, ApiTimeoutError, DaemonNotRunningError
from ._h1 import (
    CHUNK_END,
    CONNECTION_CLOSED,
    CRLF,
    End,
    Head,
    ProtocolError,
    ResponseReader,
    chunk_head,
    request_bytes,
)
from ._wire import Endpoint, error_of, request_headers

READ_SIZE = 256 * 1024
#: ``copy_to`` receives a body into a buffer this big and writes it out from there.
COPY_BUFFER = 1024 * 1024
# The kernel's buffer for our requests on the daemon's unix socket: Linux's default ~208 KiB
# let an upload hand over less than one 256 KiB block per wake-up of the daemon.
UNIX_SEND_BUFFER = 4 * 1024 * 1024
CONNECT_TIMEOUT = 5.0


#: ``request_fd`` waits this long for the daemon's 100 Continue before giving up the
#: request (a daemon without the route reads the body first: it never sends one).
CONTINUE_WAIT = 5.0


class NoContinueError(ApiError):
    """The daemon did not ask for the body of a ``request_fd`` in time: no descriptor was
    sent, the connection is dropped, and the caller may send the bytes another way."""


class ConnectionClosedError(ApiError):
    """The daemon closed the connection before answering (an idle kept-alive one may be
    closed by the daemon at any time: the request is sent again on a new one)."""


class Connection:
    """One kept-alive HTTP/1.1 connection; ``request`` returns a Response to read fully or
    close before the next request."""

    def __init__(self, endpoint: Endpoint, timeout: float) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.sock = _connect(endpoint, timeout)
        self.reader = ResponseReader()
        self.sent = True  # the last request went out whole (a new connection: none yet)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def request(self, method: str, target: str, body: bytes | Iterable[bytes] | None,
                headers: list[tuple[str, str]] | None = None) -> Response:
        hdrs, whole = request_headers(self.endpoint, body, headers)
        try:
            head = request_bytes(method, target, hdrs)
        except ValueError as exc:
            raise ApiError(f"cannot send this request: {exc}") from None
        self.sent = False
        try:
            if whole:
                self._send([head, whole])
            elif body is not None and whole is None:
                self._send([head])
                chunks: Iterable[bytes] = body  # type: ignore[assignment]
                for chunk in chunks:
                    if chunk:
                        self._send([chunk_head(len(chunk)), chunk, CRLF])
                self._send([CHUNK_END])
            else:
                self._send([head])
            self.sent = True
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon answered early (an error) or closed: see what it sent below
        event = self._next()
        while not isinstance(event, Head):
            if event is CONNECTION_CLOSED:
                raise ConnectionClosedError("the daemon closed the connection without "
                                            "answering")
            event = self._next()
        return Response(self, event.status, event.headers, event.http_version)

    def request_fd(self, method: str, target: str, fd: int) -> Response:
        """A request whose body is one byte carrying an open file descriptor (SCM_RIGHTS),
        on the daemon's unix socket: the daemon reads the file itself, nothing is uploaded.

        The byte goes only after the daemon's 100 Continue: the daemon then reads it with
        ``recvmsg``, where any earlier read would have dropped the descriptor. A daemon
        that answers at once (an error, an older daemon's 404) gets no byte; that answer is
        returned and the connection is not reused."""
        if self.endpoint.unix is None:
            raise ApiError("a file descriptor can only go over the daemon's unix socket")
        hdrs, _ = request_headers(self.endpoint, b"\0", [("Expect", "100-continue")])
        head = request_bytes(method, target, hdrs)
        self.sent = False
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._send([head])  # (a kept-alive connection the daemon closed: seen below)
        seen = self.reader.interim
        self.sock.settimeout(min(self.timeout, CONTINUE_WAIT))
        try:
            while (event := self._next(interim=seen)) is not None:
                if isinstance(event, Head):  # answered without wanting the body
                    self.reader.keep_alive = False
                    return Response(self, event.status, event.headers, event.http_version)
                if event is CONNECTION_CLOSED:
                    raise ConnectionClosedError("the daemon closed the connection without "
                                                "answering")
        except ApiTimeoutError:
            raise NoContinueError(f"the daemon sent no 100 Continue in {CONTINUE_WAIT:g} s "
                                  "(a daemon without this route waits for a body)") from None
        finally:
            self.sock.settimeout(self.timeout)
        try:
            self.sock.sendmsg([b"\0"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                         fd.to_bytes(4, sys.byteorder, signed=True))])
        except TimeoutError:
            raise ApiTimeoutError(f"the daemon stopped reading our request for "
                                  f"{self.timeout:g} s") from None
        except OSError as exc:
            raise ConnectionClosedError(f"the connection to the daemon broke: {exc}") from None
        self.sent = True
        try:
            event = self._next()
            while not isinstance(event, Head):
                if event is CONNECTION_CLOSED:
                    raise ConnectionClosedError("")
                event = self._next()
        except ConnectionClosedError:  # closed or reset: not retried, it may have the file
            raise ApiError("the daemon closed the connection without answering, after "
                           "taking the file; see its log") from None
        return Response(self, event.status, event.headers, event.http_version)

    def _send(self, pieces: list[bytes]) -> None:
        # Sent one by one: an upload's blocks go to the socket without being copied into
        # each chunk's framing (a 64 MiB add copied 64 MiB). Small ones are joined (one
        # write: no Nagle stall between a head and its body).
        if len(pieces) > 1 and sum(map(len, pieces)) < 65536:
            pieces = [b"".join(pieces)]
        try:
            for piece in pieces:
                self.sock.sendall(piece)
        except TimeoutError:
            raise ApiTimeoutError(f"the daemon stopped reading our request for "
                                  f"{self.timeout:g} s") from None

    def _next(self, interim: int | None = None) -> object:
        """The reader's next event, receiving as needed; with ``interim``, None once an
        interim answer (100 Continue) beyond that count has come."""
        while True:
            try:
                event = self.reader.next_event()
            except ProtocolError as exc:
                if exc.in_body:  # closed part-way through a body
                    raise ApiError("the stream from the daemon broke off before its end; see "
                                   "the daemon's log for the cause") from None
                raise ApiError(f"the daemon's answer is malformed: {exc}") from None
            if event is not None:
                return event
            if interim is not None and self.reader.interim != interim:
                return None
            try:
                data = self.sock.recv(READ_SIZE)
            except TimeoutError:
                raise ApiTimeoutError(f"the daemon did not answer in {self.timeout:g} s "
                                      "(pass a longer timeout)") from None
            except OSError as exc:
                raise ConnectionClosedError(f"the connection to the daemon broke: {exc}"
                                            ) from None
            self.reader.receive(data)

    def reusable(self) -> bool:
        """The last request went out whole and its answer was read to its end, on a
        connection the answer did not say it closes."""
        return self.sent and not self.reader.in_response and self.reader.keep_alive


class Response:
    """A response whose body is read as it arrives; errors (status >= 400, a failed stream)
    raise ApiError with the daemon's message."""

    def __init__(self, conn: Connection, status: int, headers: list[tuple[bytes, bytes]],
                 http_version: bytes = b"1.1") -> None:
        self.conn = conn
        self.status = status
        self.headers = {k.decode().lower(): v.decode("latin-1") for k, v in headers}
        self.http_version = http_version
        self.done = False
        self.started = False  # some of the body was read (copy_to must not take over)

    def iter_raw(self) -> Iterator[bytes]:
        while not self.done:
            event = self.conn._next()
            if isinstance(event, bytes):
                self.started = True
                yield event
            elif isinstance(event, End):
                self.done = True
                for name, value in event.trailers:
                    if name == b"x-stream-error" and value:
                        raise ApiError(value.decode("latin-1"))
            elif event is CONNECTION_CLOSED:
                raise ApiError("the stream from the daemon broke off before its end; see "
                               "the daemon's log for the cause")

    def read(self) -> bytes:
        return b"".join(self.iter_raw())

    def copy_to(self, fd: int) -> int:
        """Write the body to a file descriptor as it arrives; returns its length.

        A chunked body (how the daemon streams cat and get) is parsed here, received into one
        buffer and written out from it: through h11 each chunk was copied three times more
        (its receive buffer, the chunk cut from it, bytes for the caller), a tenth of a 64 MiB
        cat's wall time. Anything else goes through the reader.
        """
        conn = self.conn
        if self.done or self.started or not conn.sent or not conn.reader.at_chunked_body:
            total = 0
            for data in self.iter_raw():
                _write_all(fd, data)
                total += len(data)
            return total
        reader = _ChunkedBody(conn, fd, conn.reader.take_unparsed())
        total = reader.run()
        # The message ended where the reader never saw it: a fresh one for the next answer,
        # given whatever the daemon sent after this one (nothing, normally); unless this
        # answer said the connection closes after it (then the connection is not reused).
        keep_alive = conn.reader.keep_alive
        conn.reader = ResponseReader(reader.rest)
        conn.reader.keep_alive = keep_alive
        self.done = True
        if reader.stream_error:
            raise ApiError(reader.stream_error)
        return total

    def raise_for_status(self) -> None:
        if self.status >= 400:
            raise error_of(self.status, self.read())


class _ChunkedBody:
    """Reads a chunked body (RFC 9112 7.1) from the connection's socket straight into one
    buffer and writes the data to ``fd``; the bytes the reader already held come first."""

    def __init__(self, conn: Connection, fd: int, leftover: bytes) -> None:
        self.conn = conn
        self.fd = fd
        self.buf = bytearray(max(COPY_BUFFER, len(leftover)))
        self.view = memoryview(self.buf)
        self.buf[:len(leftover)] = leftover
        self.start, self.end = 0, len(leftover)
        self.rest = b""
        self.stream_error = ""

    def _more(self) -> None:
        """Receive more bytes behind the unparsed ones (moved to the front first)."""
        if self.start == self.end:
            self.start = self.end = 0
        elif self.end == len(self.buf):
            if self.start == 0:
                raise ApiError("the daemon's answer is malformed: a chunk line is too long")
            pending = self.end - self.start
            self.buf[:pending] = self.buf[self.start:self.end]
            self.start, self.end = 0, pending
        try:
            n = self.conn.sock.recv_into(self.view[self.end:])
        except TimeoutError:
            raise ApiTimeoutError(f"the daemon did not answer in {self.conn.timeout:g} s "
                                  "(pass a longer timeout)") from None
        except OSError as exc:
            raise ConnectionClosedError(f"the connection to the daemon broke: {exc}") from None
        if not n:
            raise ApiError("the stream from the daemon broke off before its end; see the "
                           "daemon's log for the cause")
        self.end += n

    def _line(self) -> bytes:
        while (cut := self.buf.find(b"\r\n", self.start, self.end)) < 0:
            self._more()
        line = bytes(self.buf[self.start:cut])
        self.start = cut + 2
        return line

    def run(self) -> int:
        total = 0
        while True:
            line = self._line()
            digits = line.split(b";", 1)[0].strip()
            if not digits or len(digits) > 16 or digits.lower().strip(b"0123456789abcdef"):
                raise ApiError(f"the daemon's answer is malformed: chunk line {line[:40]!r}")
            size = int(digits, 16)
            if not size:
                break
            total += size
            while size:
                if self.start == self.end:
                    self._more()
                n = min(size, self.end - self.start)
                _write_all(self.fd, self.view[self.start:self.start + n])
                self.start += n
                size -= n
            if self._line():
                raise ApiError("the daemon's answer is malformed: no CRLF after a chunk")
        while line := self._line():  # trailers, up to the blank line
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"x-stream-error" and value.strip():
                self.stream_error = value.strip().decode("latin-1")
        self.rest = bytes(self.buf[self.start:self.end])
        return total


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _connect(endpoint: Endpoint, timeout: float) -> socket.socket:
    try:
        if endpoint.unix is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, UNIX_SEND_BUFFER)
            sock.settimeout(min(timeout, CONNECT_TIMEOUT))
            try:
                sock.connect(endpoint.unix)
            except BaseException:
                sock.close()
                raise
        else:
            sock = socket.create_connection((endpoint.host, endpoint.port),
                                            timeout=min(timeout, CONNECT_TIMEOUT))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if endpoint.tls:
                import ssl

                sock = ssl.create_default_context().wrap_socket(
                    sock, server_hostname=endpoint.host)
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        detail = f"no API socket at {endpoint.unix}" if isinstance(exc, FileNotFoundError) \
            else f"{endpoint.describe()} refused the connection"
        raise DaemonNotRunningError(endpoint.repo or "?", detail) from None
    except OSError as exc:
        raise DaemonNotRunningError(endpoint.repo or "?",
                                    f"cannot reach {endpoint.describe()}: {exc}") from None
    sock.settimeout(timeout)
    return sock


class Pool:
    """Idle kept-alive connections, shared by the threads using one client."""

    def __init__(self, endpoint: Endpoint, timeout: float, size: int = 16) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.size = size
        self._idle: list[Connection] = []
        self._lock = threading.Lock()

    def take(self, timeout: float | None = None) -> Connection:
        wanted = self.timeout if timeout is None else timeout
        with self._lock:
            while self._idle:
                conn = self._idle.pop()
                if conn.timeout != wanted:
                    conn.timeout = wanted
                    conn.sock.settimeout(wanted)
                return conn
        return Connection(self.endpoint, wanted)

    def give(self, conn: Connection) -> None:
        if conn.reusable():
            with self._lock:
                if len(self._idle) < self.size:
                    self._idle.append(conn)
                    return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
