"""Yamux with py-libp2p's frame reader and window accounting, and our write path.

What py-libp2p 0.8.1 does on a write, and why we differ:

- When the peer's window is used up it polls every 10 ms (``trio.sleep(0.01)``) for credit.
  Sending to Kubo, which grants credit as it reads, most 1 MiB Bitswap messages waited out
  several of those polls. Here a WINDOW_UPDATE wakes the writer at once (``send_window`` is a
  property whose growth sets an event).
- It writes one DATA frame per 65,524 bytes, each as its own write to the secure channel
  (lock, encryption, ``send``), and those frames are 17 bytes too big for one Noise message,
  so each became two. Here all the frames the window allows (up to ``BATCH_BYTES``) go to the
  secure channel in one write, which Noise seals and sends at once (``transport.noise``).
- It takes the stream's write lock per frame, so two tasks writing one stream could
  interleave their frames; here one write's bytes are contiguous.
- Every frame it writes is unpacked again to format a debug line, logging off or not.

And on a read: it granted credit after every read, however small (with hysteresis off, as
``host`` had to set it: with it on, one branch counted the bytes just read twice and the
credit went past 16 MiB, which js-libp2p then sent as one oversized frame). Kubo's 64 KiB
frames arrive a few KiB per read, so fetching 64 MiB from Kubo sent ~9,000 WINDOW_UPDATE
frames, each a Noise message and a ``send``. Here credit is granted as go-yamux does
(``GrowTo``): only once the peer's remaining credit plus what we hold unread has fallen to
half the window or less, and then exactly back up to the window, never past it; the window
doubles (up to 16 MiB) when that happens again within four round trips, as the library's and
go-yamux's auto-tuning do.

And it kept whatever a peer sent beyond a stream's window (it logged a warning and carried
on), so a stream nobody reads (a handler that never reads, a Bitswap stream waiting for a
slot) grew without bound. Here a peer that overruns a stream's window loses that stream:
what it buffered is dropped and the stream is reset both ways (go-yamux closes the whole
session with a protocol error; resetting only the stream keeps the peer's other streams).
The check sits in ``recv_window``'s setter, where the frame reader subtracts each DATA
frame; at most one frame (16 MiB, the frame limit) is held before the check drops it.

And the session's reader is ours (``Yamux.handle_incoming``): the library read each frame with
two exact reads through the secure session's buffer (copies, and a ``recv`` or more per
frame) and took the session lock, a checkpoint, for each frame. Ours feeds each decrypted
Noise message to a sans-IO ``frames.FrameReader`` and handles every frame in it without a
lock (nothing awaits between a lookup and its update), so a task switch comes per socket
read, not per frame; a stream read with bytes waiting takes them without the lock either.
Kept from the library: DATA frames over 16 MiB end the session (we also send GO_AWAY with
a protocol error, as go-yamux), a frame begun must be complete within 60 s, a read error or
GO_AWAY ends the session, SYN for a stream we have is answered with RST. FIN and RST count
on every DATA and WINDOW_UPDATE frame (the library ignored them on ACK frames).

The frame format, window sizes (256 KiB initial, up to 16 MiB) and the 5 s limit on waiting
for credit are the library's.
py-libp2p builds streams from its module's ``YamuxStream`` name (in ``open_stream`` and in
its frame reader), and sessions from the ``Yamux`` name its muxer negotiation imported (not
from the class given in ``muxer_opt``), so importing this module points both names here, as
``host`` does for QUIC streams.
"""

from __future__ import annotations

import contextlib
import math
import struct
from collections.abc import Awaitable, Callable
from functools import partial

import trio
from libp2p.io.exceptions import ConnectionClosedError, IncompleteReadError
from libp2p.security.secure_session import SecureSession
from libp2p.stream_muxer import muxer_multistream as _muxer_multistream
from libp2p.stream_muxer.exceptions import MuxedStreamError
from libp2p.stream_muxer.yamux import yamux as _lib

from ..errors import CodecError
from ..logs import get_logger
from .frames import HEADER, Frame, FrameReader
from .noise import _NoiseReadWriter

FRAME_PAYLOAD = 64 * 1024 - _lib.HEADER_SIZE  # as go-yamux (MaxMessageSize 64 KiB)
BATCH_BYTES = 1024 * 1024  # one write to the secure channel; other streams go in between
WINDOW_WAIT = 5.0  # the library's limit: no credit for this long and the write fails
CLOSE_CHECK = 0.1  # a writer waiting for credit notices a closed stream this fast
DATA_READ_TIMEOUT = 60.0  # the library's: the rest of a frame once its header has come
READ_SIZE = 256 * 1024  # one read of a secure channel that is not message-framed
GO_AWAY_LINGER = 2.0  # after a protocol error's GO_AWAY: how long the peer has to close

log = get_logger(__name__)


class YamuxStream(_lib.YamuxStream):
    """A stream whose writer waits for the peer's credit on an event, and writes in batches."""

    def __init__(self, stream_id: int, conn: _lib.Yamux, is_initiator: bool) -> None:
        self._credit = trio.Event()
        self._send_window = 0
        self._recv_window = 0
        self._overrun = False
        self._writing = trio.Lock()
        super().__init__(stream_id, conn, is_initiator)

    @property
    def send_window(self) -> int:
        return self._send_window

    @send_window.setter
    def send_window(self, value: int) -> None:
        grew = value > self._send_window
        self._send_window = value
        if grew:
            self._credit.set()

    @property
    def recv_window(self) -> int:
        """The credit the peer has left on this stream."""
        return self._recv_window

    @recv_window.setter
    def recv_window(self, value: int) -> None:
        if value < 0:  # the frame reader took more than the peer was granted
            self._window_exceeded(-value)
            value = 0
        self._recv_window = value

    def _window_exceeded(self, excess: int) -> None:
        """Drop what the peer sent on this stream and reset it (a sync hook, called by the
        library's frame reader under ``streams_lock``: the RST is sent from a task)."""
        buffer = self.conn.stream_buffers.get(self.stream_id)
        if buffer is not None:
            buffer.clear()
        self.closed = self.send_closed = self.recv_closed = True
        self.reset_received = True  # its reader sees a reset, not a clean end
        event = self.conn.stream_events.get(self.stream_id)
        if event is not None:
            event.set()
        if self._overrun:
            return
        self._overrun = True
        log.warning("yamux window exceeded, stream reset", peer=str(self.conn.peer_id),
                    stream=self.stream_id, excess=excess)
        nursery = getattr(self.conn, "_nursery", None)
        if nursery is not None:
            nursery.start_soon(self._reset_overrun)

    async def _reset_overrun(self) -> None:
        header = struct.pack(_lib.YAMUX_HEADER_FORMAT, 0, _lib.TYPE_WINDOW_UPDATE,
                             _lib.FLAG_RST, self.stream_id, 0)
        try:
            with trio.move_on_after(WINDOW_WAIT):
                await self.conn._write_frame(header)
        except Exception as exc:  # an edge: a task of the session's nursery
            log.debug("yamux reset not sent", peer=str(self.conn.peer_id),
                      stream=self.stream_id, error=repr(exc))
        await self.conn._finalize_stream(self, fully_closed=True)

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        total = len(view)
        sent = 0
        async with self._writing:
            while True:
                if self.send_closed:
                    raise MuxedStreamError("Stream is closed for sending")
                if self.closed:
                    raise MuxedStreamError("Stream is closed")
                if sent >= total:
                    return
                n = min(self.send_window, total - sent, BATCH_BYTES)
                if n <= 0:
                    await self._wait_for_credit()
                    continue
                self.send_window -= n
                parts: list[bytes | memoryview] = []  # joined once: one copy of the data
                for start in range(sent, sent + n, FRAME_PAYLOAD):
                    chunk = view[start:min(start + FRAME_PAYLOAD, sent + n)]
                    parts.append(struct.pack(_lib.YAMUX_HEADER_FORMAT, 0, _lib.TYPE_DATA, 0,
                                             self.stream_id, len(chunk)))
                    parts.append(chunk)
                await self.conn._write_frame(b"".join(parts))
                sent += n

    async def read(self, n: int | None = -1) -> bytes:
        """The library's read, without its session lock (a checkpoint per read) when bytes
        are waiting: taking them does not await, so no other task sees the buffer half
        taken. Anything else (nothing buffered, a reset, the session ending, ``n`` of -1)
        is the library's path."""
        conn = self.conn
        buffer = conn.stream_buffers.get(self.stream_id)
        if not buffer or n is None or n <= 0 or self.reset_received \
                or conn.event_shutting_down.is_set() or conn.streams_lock.locked():
            return await super().read(n)
        await trio.lowlevel.checkpoint_if_cancelled()
        if n >= len(buffer):
            data = bytes(buffer)
            buffer.clear()
        else:
            with memoryview(buffer) as view:
                data = bytes(view[:n])
            del buffer[:n]
        if self.closed and not buffer:
            conn._finalize_stream_locked(self, fully_closed=True)
        await self._auto_tune_and_send_window_update(bytes_read=len(data))
        return data

    async def _auto_tune_and_send_window_update(self, *, bytes_read: int = 0) -> None:
        """After a read: grant credit back up to the window once half of it is used."""
        target = self.target_recv_window
        held = len(self.conn.stream_buffers.get(self.stream_id, b""))
        current = self.recv_window + held  # the peer's credit left, plus what we hold unread
        if self.recv_closed or target - current < target // 2:
            return
        now = trio.current_time()
        rtt = self._effective_rtt()
        if self.epoch_start > 0 and now - self.epoch_start < 4 * rtt:
            target = self.target_recv_window = min(target * 2, _lib.MAX_WINDOW_SIZE)
        self.epoch_start = now
        delta = target - current
        self.recv_window += delta
        await self.send_window_update(delta)

    async def _wait_for_credit(self) -> None:
        deadline = trio.current_time() + WINDOW_WAIT
        while self.send_window <= 0 and not (self.closed or self.send_closed):
            if trio.current_time() >= deadline:
                raise MuxedStreamError(
                    f"Timed out waiting for window update after {WINDOW_WAIT:.0f} seconds.")
            self._credit = trio.Event()
            with trio.move_on_after(CLOSE_CHECK):
                await self._credit.wait()


class Yamux(_lib.Yamux):
    """The library's session, writing frames without re-parsing them for a debug line, and
    with one checkpoint per frame instead of four or five.

    The library took its session lock, then the Noise layer's lock, then the TCP stream's,
    each acquisition a checkpoint (a task switch through trio's scheduler) before the
    ``send``; the session lock alone serializes every write once the session is up. Here
    that lock is taken without a checkpoint when free, and over our Noise on TCP the frame
    is sealed and sent directly (``_NoiseReadWriter.write_serialized``). Kubo opens a stream
    per Bitswap message, and each costs an ACK, the negotiation answer, a FIN and credit.
    """

    async def handle_incoming(self) -> None:
        """Read the secure channel a message at a time and act on every frame in it.

        The library read each frame with two exact reads and took the session lock (a
        checkpoint) for each; here the frames of one read are handled in one go, without
        the lock: nothing awaits between looking a stream up and updating it, so no other
        task sees a half-applied frame (those that hold the lock across an await, ``close``,
        clear the maps after). Only ACKs, pings, RSTs and handing a new stream over await.
        Kept from the library: DATA over 16 MiB ends the session; once a frame has begun,
        its rest must arrive within ``DATA_READ_TIMEOUT``; any read error ends the session.
        """
        frames = FrameReader()
        read = self._reader()
        deadline = math.inf
        try:
            while not self.event_shutting_down.is_set():
                if frames.pending:
                    with trio.move_on_at(deadline) as late:
                        chunk = await read()
                    if late.cancelled_caught:
                        log.warning("yamux frame incomplete for too long; connection closed",
                                    peer=str(self.peer_id), timeout=DATA_READ_TIMEOUT)
                        break
                else:
                    chunk = await read()
                if not chunk:  # the end of a channel that is not message-framed
                    break
                batch = frames.feed(chunk)
                if not frames.pending:
                    deadline = math.inf
                elif batch or deadline == math.inf:  # the frame held began in this chunk
                    deadline = trio.current_time() + DATA_READ_TIMEOUT
                if not await self._on_frames(batch):
                    break
        except CodecError as exc:
            log.warning("yamux protocol error; connection closed", peer=str(self.peer_id),
                        error=str(exc))
            await self._go_away(_lib.GO_AWAY_PROTOCOL_ERROR)
            await self._linger(read)
        except (IncompleteReadError, ConnectionClosedError) as exc:
            log.debug("yamux connection closed", peer=str(self.peer_id), error=str(exc))
        except Exception as exc:  # an edge: the session's read task; the session ends
            log.info("yamux connection failed", peer=str(self.peer_id),
                     error=f"{type(exc).__name__}: {exc}")
        self.event_shutting_down.set()
        await self._cleanup_on_error()

    async def _linger(self, read: Callable[[], Awaitable[bytes]]) -> None:
        """After our GO_AWAY, read and drop what the peer still sends until it closes (at
        most ``GO_AWAY_LINGER``): a socket closed with unread bytes sends an RST, and the
        peer's kernel drops whatever it has not read yet, our GO_AWAY included."""
        with trio.move_on_after(GO_AWAY_LINGER), contextlib.suppress(Exception):
            while await read():
                pass

    def _reader(self) -> Callable[[], Awaitable[bytes]]:
        """One read of the secure channel: a whole decrypted message from a secure session
        (what its buffer still holds first), else up to ``READ_SIZE`` bytes."""
        conn = self.secured_conn
        if isinstance(conn, SecureSession):
            return partial(conn.read, None)
        return partial(conn.read, READ_SIZE)

    async def _on_frames(self, batch: list[Frame]) -> bool:
        for frame in batch:
            if not await self._on_frame(frame):
                return False
        return True

    async def _on_frame(self, frame: Frame) -> bool:
        """Act on one frame; False once the session is over (GO_AWAY)."""
        typ, flags, sid, length, payload = frame
        if typ == _lib.TYPE_DATA or typ == _lib.TYPE_WINDOW_UPDATE:
            if flags & _lib.FLAG_SYN:
                await self._on_syn(frame)
                return True
            stream = self.streams.get(sid)
            if stream is None:
                return True  # a stream already gone (reset, overrun, swept): dropped
            if typ == _lib.TYPE_DATA:
                buffer = self.stream_buffers.get(sid)
                if buffer is not None and length:
                    buffer.extend(payload)
                    stream.recv_window -= length  # an overrun resets the stream
                event = self.stream_events.get(sid)
                if event is not None:
                    event.set()
            elif length:
                stream.send_window += length
            self._close_flags(stream, flags)
        elif typ == _lib.TYPE_PING:
            if flags & _lib.FLAG_SYN:
                await self._write_frame(HEADER.pack(0, _lib.TYPE_PING, _lib.FLAG_ACK, 0,
                                                    length))
            elif flags & _lib.FLAG_ACK:
                rtt = trio.current_time() - self._ping_sent_time
                self._rtt = rtt if self._rtt == 0.0 else (self._rtt + rtt) / 2
                self._ping_event.set()
        elif typ == _lib.TYPE_GO_AWAY:
            log.debug("yamux GO_AWAY received", peer=str(self.peer_id), code=length)
            return False
        return True  # other types: ignored, as the library does

    def _close_flags(self, stream: _lib.YamuxStream, flags: int) -> None:
        """FIN and RST, on any DATA or WINDOW_UPDATE frame (the yamux spec)."""
        if flags & (_lib.FLAG_FIN | _lib.FLAG_RST):
            if flags & _lib.FLAG_FIN:
                stream.recv_closed = True
                if stream.send_closed:
                    stream.closed = True
            if flags & _lib.FLAG_RST:
                stream.closed = True
                stream.reset_received = True
            event = self.stream_events.get(stream.stream_id)
            if event is not None:
                event.set()
        if stream.closed:
            self._finalize_stream_locked(stream, fully_closed=True)

    async def _on_syn(self, frame: Frame) -> None:
        """A stream the peer opens: ACKed and handed to ``accept_stream`` (a SYN with RST
        is handed over reset, unACKed; a SYN for a stream we have is refused with RST)."""
        typ, flags, sid, length, payload = frame
        if sid in self.streams:
            await self._write_frame(HEADER.pack(0, _lib.TYPE_WINDOW_UPDATE, _lib.FLAG_RST,
                                                 sid, 0))
            return
        stream = YamuxStream(sid, self, False)
        self.streams[sid] = stream
        self.stream_buffers[sid] = bytearray()
        self.stream_events[sid] = trio.Event()
        if length:
            if typ == _lib.TYPE_DATA:
                self.stream_buffers[sid].extend(payload)
                stream.recv_window -= length
                self.stream_events[sid].set()
            else:
                stream.send_window += length
        self._close_flags(stream, flags)
        if not flags & _lib.FLAG_RST:
            await self._write_frame(HEADER.pack(0, _lib.TYPE_WINDOW_UPDATE, _lib.FLAG_ACK,
                                                 sid, 0))
        try:
            self.new_stream_send_channel.send_nowait(stream)
        except trio.WouldBlock:  # the application is behind: wait for it, as the library
            await self.new_stream_send_channel.send(stream)

    async def _go_away(self, code: int) -> None:
        """Best effort: tell the peer why the session ends."""
        try:
            with trio.move_on_after(WINDOW_WAIT):
                await self._write_frame(HEADER.pack(0, _lib.TYPE_GO_AWAY, 0, 0, code))
        except Exception as exc:  # the session is ending anyway
            log.debug("yamux GO_AWAY not sent", peer=str(self.peer_id), error=repr(exc))

    async def _write_frame(self, data: bytes) -> None:
        lock = self._write_lock
        try:
            lock.acquire_nowait()
        except trio.WouldBlock:
            await lock.acquire()
        try:
            conn = self.secured_conn
            noise = getattr(conn, "conn", None)
            if isinstance(noise, _NoiseReadWriter):
                await noise.write_serialized(data)
            else:
                await conn.write(data)
        finally:
            lock.release()


_lib.YamuxStream = YamuxStream  # type: ignore[misc]
# py-libp2p's muxer negotiation builds its own Yamux by name for /yamux/1.0.0, whatever class
# muxer_opt names (muxer_multistream.new_conn); it must build ours.
_muxer_multistream.Yamux = Yamux  # type: ignore[attr-defined]
