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
The check sits in ``recv_window``'s setter because the library's frame reader subtracts
each DATA frame there, under the session's stream lock; at most one frame (the reader's
16 MiB frame limit) is held before the check drops it.

The frame format, the frame reader, window sizes (256 KiB initial, up to 16 MiB) and the 5 s
limit on waiting for credit are the library's.
py-libp2p builds streams from its module's ``YamuxStream`` name (in ``open_stream`` and in
its frame reader), and sessions from the ``Yamux`` name its muxer negotiation imported (not
from the class given in ``muxer_opt``), so importing this module points both names here, as
``host`` does for QUIC streams.
"""

from __future__ import annotations

import struct

import trio
from libp2p.stream_muxer import muxer_multistream as _muxer_multistream
from libp2p.stream_muxer.exceptions import MuxedStreamError
from libp2p.stream_muxer.yamux import yamux as _lib

from ..logs import get_logger
from .noise import _NoiseReadWriter

FRAME_PAYLOAD = 64 * 1024 - _lib.HEADER_SIZE  # as go-yamux (MaxMessageSize 64 KiB)
BATCH_BYTES = 1024 * 1024  # one write to the secure channel; other streams go in between
WINDOW_WAIT = 5.0  # the library's limit: no credit for this long and the write fails
CLOSE_CHECK = 0.1  # a writer waiting for credit notices a closed stream this fast

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
