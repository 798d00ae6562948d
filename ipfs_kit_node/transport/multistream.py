"""multistream-select for inbound streams, answered in one write where the dialer allows.

py-libp2p 0.8.1 answers a stream it accepts in two writes (its header at once, the protocol's
echo once read), and reads each line with two reads (a varint read byte by byte, then the
line), each read and write a trip through the stream's and the muxer's locks; a write is a
Yamux frame, a Noise message and a ``send``. Kubo v0.22 opens a new stream for every Bitswap
message it sends (~258 per 64 MiB) and negotiates lazily: header, protocol and message in one
write. Here, on our Yamux streams, the lines are parsed straight out of the stream's buffer
(only they are consumed: the message behind them stays for the handler), and the header and
the echo go out in one write. A dialer that waits for our header before it proposes (py-libp2p's
own) gets it as soon as its header has been read and nothing more is buffered, so no dialer
waits on us. The wire is the multistream-select 1.0.0 spec's either way. Other streams (QUIC,
mplex) take the library's path.

A peer that buffers many ``ls``/unknown lines and never reads must not make us build their
answers in memory: answers go out once ``FLUSH_AT`` bytes are pending (the stream's window
then holds us back), and a negotiation may send at most ``MAX_COMMANDS`` lines after the
header before the stream is reset. Neither go-multistream nor the library caps them (they
write each answer at once, so the window bounds them); a real dialer proposes a handful.
"""

from __future__ import annotations

import trio
from libp2p.abc import IMultiselectCommunicator
from libp2p.custom_types import StreamHandlerFn, TProtocol
from libp2p.protocol_muxer.exceptions import MultiselectError
from libp2p.protocol_muxer.multiselect import (
    DEFAULT_NEGOTIATE_TIMEOUT,
    MULTISELECT_PROTOCOL_ID,
    PROTOCOL_NOT_FOUND_MSG,
    Multiselect,
)
from libp2p.protocol_muxer.multiselect_communicator import MultiselectCommunicator

from .yamux import YamuxStream

MAX_LINE = 1024  # a protocol name, as the library's delimited reads allow
MAX_COMMANDS = 32  # lines after the header one negotiation may send (proposals and ``ls``)
FLUSH_AT = 4096  # pending answer bytes written at once rather than gathered
HEADER = MULTISELECT_PROTOCOL_ID.encode()


def delimited(line: bytes) -> bytes:
    """A multistream line: varint length, the bytes, a newline."""
    body = line + b"\n"
    n = len(body)
    prefix = bytearray()
    while n >= 0x80:
        prefix.append((n & 0x7F) | 0x80)
        n >>= 7
    prefix.append(n)
    return bytes(prefix) + body


def split_line(buf: bytes | bytearray) -> tuple[bytes, int] | None:
    """The first line of ``buf`` and the bytes it takes, or None while it is incomplete.
    Raises MultiselectError for a line that is empty, too long or not newline-ended."""
    length = shift = pos = 0
    while True:
        if pos >= len(buf):
            return None
        byte = buf[pos]
        length |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            break
        shift += 7
        if shift > 14:
            raise MultiselectError("multistream line length varint too long")
    if length == 0 or length > MAX_LINE:
        raise MultiselectError(f"multistream line of {length} bytes")
    end = pos + length
    if len(buf) < end:
        return None
    if buf[end - 1] != 0x0A:
        raise MultiselectError("multistream line not newline-delimited")
    return bytes(buf[pos:end - 1]), end


class _Lines:
    """Lines read from a Yamux stream's own buffer, consuming only what they take."""

    def __init__(self, stream: YamuxStream) -> None:
        self.stream = stream

    def _buffer(self) -> bytearray:
        buf = self.stream.conn.stream_buffers.get(self.stream.stream_id)
        if buf is None:
            raise MultiselectError("stream closed during negotiation")
        return buf

    def ready(self) -> bool:
        """A whole line is buffered (so the dialer is not waiting for us to speak)."""
        return split_line(self._buffer()) is not None

    async def next(self) -> bytes:
        while True:
            buf = self._buffer()
            line = split_line(buf)
            if line is not None:
                del buf[:line[1]]
                return line[0]
            if self.stream.reset_received or self.stream.recv_closed:
                raise MultiselectError("stream ended during negotiation")
            events = self.stream.conn.stream_events
            event = events.get(self.stream.stream_id)
            if event is None:
                raise MultiselectError("stream closed during negotiation")
            await event.wait()  # the frame reader sets it after adding bytes
            if events.get(self.stream.stream_id) is event:
                events[self.stream.stream_id] = trio.Event()


class FastMultiselect(Multiselect):
    """The library's protocol table and ``ls``; inbound Yamux streams answered in one write."""

    async def negotiate(self, communicator: IMultiselectCommunicator,
                        negotiate_timeout: int = DEFAULT_NEGOTIATE_TIMEOUT,
                        ) -> tuple[TProtocol | None, StreamHandlerFn | None]:
        stream = getattr(communicator, "read_writer", None)
        muxed = getattr(stream, "muxed_stream", None)
        if not isinstance(communicator, MultiselectCommunicator) \
                or not isinstance(muxed, YamuxStream):
            return await super().negotiate(communicator, negotiate_timeout)
        lines = _Lines(muxed)
        out = bytearray()

        async def flush() -> None:
            if out:
                try:
                    await communicator.read_writer.write(bytes(out))
                except Exception as exc:  # reset or closed under us: the library's error
                    raise MultiselectError(f"negotiation write failed: {exc}") from exc
                out.clear()

        try:
            with trio.fail_after(negotiate_timeout):
                if await lines.next() != HEADER:
                    raise MultiselectError("multiselect protocol ID mismatch")
                out += delimited(HEADER)
                for _ in range(MAX_COMMANDS):
                    # a strict dialer waits for our header first; a flood waits for the window
                    if len(out) >= FLUSH_AT or not lines.ready():
                        await flush()
                    command = (await lines.next()).decode()
                    if command == "ls":
                        names = [p for p in self.handlers if p is not None]
                        out += delimited(("\n".join(names) + "\n").encode())  # as the library
                    else:
                        protocol = TProtocol(command) if command else None
                        if protocol in self.handlers:
                            out += delimited(command.encode())
                            await flush()
                            return protocol, self.handlers[protocol]
                        out += delimited(PROTOCOL_NOT_FOUND_MSG.encode())
                    await trio.lowlevel.checkpoint()  # buffered lines never starve the rest
                raise MultiselectError(f"more than {MAX_COMMANDS} multistream lines")
        except trio.TooSlowError:
            raise MultiselectError("handshake read timeout") from None
        except UnicodeDecodeError:
            raise MultiselectError("multistream line is not UTF-8") from None


def install_fast_multiselect(host: object) -> None:
    """Answer the host's inbound streams with ``FastMultiselect``, over the same protocol
    table (handlers set before or after stay registered)."""
    library = getattr(host, "multiselect", None)
    if isinstance(library, Multiselect) and not isinstance(library, FastMultiselect):
        fast = FastMultiselect()
        fast.handlers = library.handlers
        host.multiselect = fast  # type: ignore[attr-defined]
