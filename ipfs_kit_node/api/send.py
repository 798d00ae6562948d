"""Sending answers: whole, streamed (chunked, ending in Kubo's ``X-Stream-Error`` trailer on
failure), or of known length in batched writes, with block views going to the socket uncopied."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import h11
import trio

from ..errors import IpfsKitError
from ..logs import get_logger
from .limits import WRITE_TIMEOUT
from .router import Response, _ClientGone, _describe

log = get_logger(__name__)


@dataclass
class _Sent:
    """What went out for one request (for the metrics)."""

    route: str
    status: int = 0
    bytes: int = 0


async def _send(conn: h11.Connection, stream: trio.abc.Stream, response: Response,
                head: bool = False, *, trailer: bool = False, sent: _Sent | None = None) -> None:
    """Send a response; a body that fails part-way ends the transfer as the policy says.

    An error after the first bytes cannot change the status any more. With ``trailer`` (Kubo's
    RPC) the chunked body ends with an ``X-Stream-Error`` trailer carrying the error, as Kubo
    does; otherwise the connection is closed without the final chunk, so every client sees a
    broken transfer instead of a short body that looks complete. Either way it is logged here.
    """
    headers = [("content-type", response.content_type), *response.headers]
    body = response.body
    # A streamed body whose length is known ahead (a gateway file) keeps its Content-Length.
    sized = any(name.lower() == "content-length" for name, _ in response.headers)
    streamed = not isinstance(body, bytes) and not sized
    if isinstance(body, bytes):
        headers.append(("content-length", str(len(body))))
    elif not sized:
        headers.append(("transfer-encoding", "chunked"))
        if trailer:
            headers.append(("trailer", "X-Stream-Error"))
    if sent is not None:
        sent.status = response.status
    # A whole (bytes) answer goes out in one write (one syscall, one wake-up of the client)
    # when small; a streamed one sends its headers at once (a subscriber waits on them).
    pending = conn.send(h11.Response(status_code=response.status, headers=headers))
    stream_error = ""
    if head:
        aclose = getattr(body, "aclose", None)
        if aclose is not None:
            await aclose()
    elif isinstance(body, bytes):
        if body:
            pending = await _send_data(conn, stream, pending, body)
            if sent is not None:
                sent.bytes += len(body)
    else:
        batch: list[bytes | memoryview] = []
        batched = 0
        try:  # the body is closed even if the head cannot be sent (it may own a file)
            await _write(stream, pending)
            pending = b""
            while True:
                try:
                    chunk = await anext(body)
                except StopAsyncIteration:
                    break
                except (trio.BrokenResourceError, trio.ClosedResourceError, _ClientGone):
                    raise
                except h11.RemoteProtocolError as exc:  # the client broke off its own body
                    raise _ClientGone() from exc
                except Exception as exc:
                    log.warning("response failed mid-stream", error=_describe(exc),
                                how="trailer" if trailer and streamed else "connection aborted")
                    if not (trailer and streamed):
                        raise _ClientGone() from exc  # ends this connection, nothing else
                    stream_error = _stream_error_text(exc)
                    break
                if chunk:
                    if sized:  # no framing to add: chunks go out together (one writev)
                        batch += conn.send_with_data_passthrough(_data(chunk)) or ()
                        batched += len(chunk)
                        if batched >= BATCH_BYTES or len(batch) >= BATCH_PARTS:
                            await _write_parts(stream, batch)
                            batch, batched = [], 0
                    else:
                        pending = await _send_data(conn, stream, pending, chunk, flush=True)
                    if sent is not None:
                        sent.bytes += len(chunk)
            if batch:
                await _write_parts(stream, batch)
        finally:
            aclose = getattr(body, "aclose", None)
            if aclose is not None:
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    await aclose()
    trailers = [("X-Stream-Error", stream_error)] if stream_error and streamed else []
    await _write(stream, pending + conn.send(h11.EndOfMessage(headers=trailers)))


#: Below this a body chunk is copied behind the bytes already pending (one write); above, the
#: pending bytes and h11's framing go out on their own and the chunk itself is written as it
#: is (no copy of a 256 KiB block to join it with a few framing bytes).
COALESCE_BYTES = 64 * 1024


def _data(chunk: bytes | memoryview) -> h11.Data:
    """h11 frames a chunk by its length and passes the buffer itself through: a view of a
    block goes to the socket uncopied (h11's annotation says bytes)."""
    return h11.Data(data=chunk)  # type: ignore[arg-type]


async def _send_data(conn: h11.Connection, stream: trio.abc.Stream, pending: bytes,
                     data: bytes | memoryview, *, flush: bool = False) -> bytes:
    """Send one body chunk behind ``pending`` (bytes not yet written); returns what is still
    pending: a small chunk may wait for the end of the message unless ``flush``; after a big
    one, the few bytes closing its chunked framing wait for the next write."""
    parts = conn.send_with_data_passthrough(_data(data))
    assert parts is not None
    if len(data) < COALESCE_BYTES:
        pending += b"".join(parts)
        if flush:
            await _write(stream, pending)
            pending = b""
        return pending
    for part in parts:  # framing, the data itself (not copied), framing
        if part is data:
            if pending:
                await _write(stream, pending)
                pending = b""
            await _write(stream, data)
        else:
            pending += part
    return pending


def _sysconf(name: str, default: int) -> int:
    """``os.sysconf(name)``, or ``default`` where it is unknown (or says no limit)."""
    try:
        value = os.sysconf(name)
    except (ValueError, OSError, AttributeError):
        return default
    return value if value > 0 else default


#: A streamed body of known length (a gateway file) is written in pieces of about this many
#: bytes, several chunks in one system call: each write costs a pass of the event loop and a
#: wake-up of the client, and a 256 MiB file is 1,024 blocks.
BATCH_BYTES = 1024 * 1024
#: ... or of this many chunks, whichever comes first: one ``sendmsg`` takes at most IOV_MAX
#: buffers (1,024 on Linux; more fail with EMSGSIZE), and a file of 512-byte blocks has
#: 2,048 of them in 1 MiB.
BATCH_PARTS = 512
#: The most buffers one ``sendmsg`` is given (``_write_parts`` splits longer lists).
IOV_MAX = min(_sysconf("SC_IOV_MAX", 1024), 1024)


async def _write_parts(stream: trio.abc.Stream, parts: list[bytes | memoryview]) -> None:
    """Write ``parts`` in order, by ``sendmsg`` (writev) of up to IOV_MAX of them where the
    stream is a socket."""
    sock = getattr(stream, "socket", None)
    if sock is None or len(parts) == 1:
        for part in parts:
            await _write(stream, part)
        return
    views = [memoryview(part) for part in parts]
    try:
        with trio.fail_after(WRITE_TIMEOUT):
            while views:
                sent = await sock.sendmsg(views[:IOV_MAX])
                while sent:
                    if sent >= len(views[0]):
                        sent -= len(views.pop(0))
                    else:
                        views[0] = views[0][sent:]
                        sent = 0
    except OSError as exc:  # as SocketStream.send_all reports a peer gone
        raise trio.BrokenResourceError(f"socket write failed: {exc}") from exc


def _stream_error_text(exc: Exception) -> str:
    """An error as one header value: the message of our own errors, printable ASCII only."""
    text = str(exc) if isinstance(exc, IpfsKitError) else _describe(exc)
    text = " ".join(text.split())
    return text.encode("ascii", "replace").decode()[:1000] or type(exc).__name__


async def _write(stream: trio.abc.Stream, data: bytes | memoryview) -> None:
    with trio.fail_after(WRITE_TIMEOUT):
        await stream.send_all(data)


async def _send_if_possible(
    conn: h11.Connection, stream: trio.abc.Stream, response: Response
) -> None:
    if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
        with contextlib.suppress(
            h11.LocalProtocolError, trio.BrokenResourceError, trio.ClosedResourceError,
            trio.TooSlowError, _ClientGone,
        ):
            await _send(conn, stream, response)
