"""Noise (XX, ChaCha20-Poly1305) with the library's handshake and our transport framing.

py-libp2p 0.8.1 sends a write as one Noise message per 65,519 plaintext bytes, each its own
``send`` (lock, syscall, checkpoint), and reads each message with two exact reads on the
socket (its 2-byte length, then its body, each a ``recv`` of its own). A 1 MiB Bitswap
message cost ~17 sends to write and ~34 receives to read. Here a write is encrypted whole and
sent at once, and reads take what the socket holds (up to ``READ_SIZE``) and cut messages out
of it. The wire is the same (libp2p noise spec: 2-byte big-endian length, then at most 65,535
bytes of ciphertext); the buffer holds at most one read beyond a message.
"""

from __future__ import annotations

from typing import Any, cast

import trio
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from libp2p.abc import IRawConnection, ISecureConn
from libp2p.io.exceptions import ConnectionClosedError, IncompleteReadError
from libp2p.io.trio import TrioTCPStream
from libp2p.peer.id import ID
from libp2p.security.noise.io import MAX_PLAINTEXT_LENGTH, NoiseTransportReadWriter
from libp2p.security.noise.transport import Transport
from libp2p.security.secure_session import SecureSession
from noise.constants import MAX_NONCE
from noise.exceptions import NoiseMaxNonceError

from ..logs import get_logger

log = get_logger(__name__)

READ_SIZE = 256 * 1024
TAG = 16  # Poly1305's tag after each message's ciphertext


class _NoiseReadWriter(NoiseTransportReadWriter):
    """Transport messages, written in one send and read out of a shared buffer."""

    def __init__(self, original: NoiseTransportReadWriter) -> None:
        super().__init__(original.read_writer.read_write_closer,  # type: ignore[arg-type]
                         original.noise_state)
        self._raw = original.read_writer.read_write_closer
        self._in = bytearray()
        self._write_lock = trio.Lock()  # nonces are used in the order bytes hit the wire

    def _seal(self, msg: bytes) -> bytes | bytearray:
        """Noise messages of at most 65,519 plaintext bytes each, length-prefixed, in one
        buffer: each slice of ``msg`` is encrypted straight into its place there
        (``encrypt_into``), where noiseprotocol took each slice as a copy of its own, returned
        each ciphertext in a new buffer and the join copied them all again (256 KiB: ~145 us
        instead of 300-400 us). Same nonces, same bytes (the library's path is the reference
        in the tests; it is kept for a cipher state that is not plain ChaCha20-Poly1305)."""
        state = self.noise_state.noise_protocol.cipher_state_encrypt
        aead = getattr(state.cipher, "cipher", None)
        if isinstance(aead, ChaCha20Poly1305) and isinstance(state.n, int):
            return _seal_into(aead, state, msg)
        if len(msg) <= MAX_PLAINTEXT_LENGTH:
            sealed = self.encrypt(msg)
            return len(sealed).to_bytes(2, "big") + sealed
        parts: list[bytes] = []
        view = memoryview(msg)
        for start in range(0, len(msg), MAX_PLAINTEXT_LENGTH):
            sealed = self.encrypt(bytes(view[start:start + MAX_PLAINTEXT_LENGTH]))
            parts.append(len(sealed).to_bytes(2, "big"))
            parts.append(sealed)
        return b"".join(parts)

    async def write_msg(self, msg: bytes, prefix_encoded: bool = False) -> None:
        if prefix_encoded:  # handshake framing; never used once the session is up
            await super().write_msg(msg, prefix_encoded)
            return
        async with self._write_lock:
            await trio.lowlevel.checkpoint_if_cancelled()
            sealed = self._seal(msg)
            try:
                await self._raw.write(cast(bytes, sealed))  # any buffer: it goes to send_all
            except trio.Cancelled:
                self._abandon()
                raise

    async def write_serialized(self, msg: bytes) -> None:
        """``write_msg`` for a caller that already serializes every write to this session
        (our Yamux session's lock): sealed and sent straight to the TCP socket, without this
        layer's lock and the library's socket lock, each a checkpoint (a task switch) per
        frame. Whoever holds either lock meanwhile gets the locked path (same wire, same
        errors as the library's TCP stream)."""
        tcp = getattr(self._raw, "stream", None)
        if not isinstance(tcp, TrioTCPStream) or not isinstance(tcp.stream, trio.SocketStream) \
                or self._write_lock.locked() or tcp.write_lock.locked():
            await self.write_msg(msg)
            return
        # A pending cancel is taken before sealing: once sealed, the nonce is spent, and a
        # message not sent (or cut) leaves the peer unable to decrypt anything after it.
        await trio.lowlevel.checkpoint_if_cancelled()
        sealed = self._seal(msg)
        try:
            await tcp.stream.send_all(memoryview(sealed))
        except trio.Cancelled:
            self._abandon()
            raise
        except trio.BrokenResourceError as error:
            raise ConnectionClosedError(f"TCP connection reset by remote peer: {error}",
                                        transport="tcp") from error
        except trio.ClosedResourceError:
            return  # closed here, as the library's stream treats it

    def _abandon(self) -> None:
        """A sealed message was cancelled before all of it was sent: its nonce is spent and
        the peer would fail every later message. Close the socket so the connection ends
        cleanly (the peer sees it close, the muxer's reader cleans up) instead of dying on
        a failed decrypt."""
        tcp = getattr(self._raw, "stream", None)
        sock = getattr(getattr(tcp, "stream", None), "socket", None)
        if sock is not None:
            log.info("noise write cancelled mid-message; connection closed")
            sock.close()

    async def read_msg(self, prefix_encoded: bool = False) -> bytes:
        if prefix_encoded:
            return await super().read_msg(prefix_encoded)
        buf = self._in
        while len(buf) < 2:
            await self._fill(2)
        end = 2 + int.from_bytes(buf[:2], "big")
        while len(buf) < end:
            await self._fill(end)
        sealed = bytes(buf[2:end])
        del buf[:end]  # CPython trims a bytearray's head in O(1)
        return self.decrypt(sealed)

    async def _fill(self, wanted: int) -> None:
        tcp = getattr(self._raw, "stream", None)
        if isinstance(tcp, TrioTCPStream) and isinstance(tcp.stream, trio.SocketStream) \
                and not tcp.read_lock.locked():
            data = await self._receive(tcp.stream)
        else:
            data = await self._raw.read(READ_SIZE)
        if not data:  # as the library's exact reads end (Yamux logs a clean close at 0)
            raise IncompleteReadError(
                f"connection closed: expected {wanted} bytes, got {len(self._in)}",
                expected_bytes=wanted, received_bytes=len(self._in))
        self._in += data


    @staticmethod
    async def _receive(sock: trio.SocketStream) -> bytes:
        """The library's TCP read without its read lock (a checkpoint per read): only the
        session's read task reads once the handshake is done. Same errors as its stream."""
        try:
            return await sock.receive_some(READ_SIZE)
        except trio.BrokenResourceError as error:
            raise ConnectionClosedError(f"TCP connection reset by remote peer: {error}",
                                        transport="tcp") from error
        except trio.ClosedResourceError:
            return b""  # closed here: an end, as the library's stream treats it


def _seal_into(aead: ChaCha20Poly1305, state: Any, msg: bytes) -> bytearray:
    """``msg`` as Noise transport messages (noise spec: ChaCha20-Poly1305, nonce 4 zero bytes
    and the 64-bit little-endian counter, no associated data), each behind its 2-byte
    big-endian length, sealed in place in one buffer; ``state.n`` advances per message."""
    view = memoryview(msg)
    size = len(view)
    count = max(1, -(-size // MAX_PLAINTEXT_LENGTH))
    if state.n + count > MAX_NONCE:  # the library's last usable nonce is MAX_NONCE - 1
        raise NoiseMaxNonceError("Nonce has depleted!")
    out = bytearray(size + count * (2 + TAG))
    with memoryview(out) as sink:
        at = 0
        for start in range(0, max(size, 1), MAX_PLAINTEXT_LENGTH):
            part = view[start:start + MAX_PLAINTEXT_LENGTH]
            sealed = len(part) + TAG
            sink[at:at + 2] = sealed.to_bytes(2, "big")
            nonce = b"\0\0\0\0" + state.n.to_bytes(8, "little")
            aead.encrypt_into(nonce, part, None, sink[at + 2:at + 2 + sealed])
            state.n += 1
            at += 2 + sealed
    return out


def _tuned(conn: ISecureConn) -> ISecureConn:
    if isinstance(conn, SecureSession) and type(conn.conn) is NoiseTransportReadWriter:
        # The handshake read exact sizes, so nothing is buffered below us yet.
        conn.conn = _NoiseReadWriter(conn.conn)
    return conn


class NoiseTransport(Transport):
    """The library's Noise handshake; our framing for the session after it."""

    async def secure_inbound(self, conn: IRawConnection) -> ISecureConn:
        return _tuned(await super().secure_inbound(conn))

    async def secure_outbound(self, conn: IRawConnection, peer_id: ID) -> ISecureConn:
        return _tuned(await super().secure_outbound(conn, peer_id))
