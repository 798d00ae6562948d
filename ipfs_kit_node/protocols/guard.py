"""The edge guard for libp2p stream handlers.

py-libp2p runs a stream handler in the host's own task group: an exception escaping one ends
the host, and with it the node. Every handler we register goes through ``guarded`` so that a
peer's bad message, our own bug, or a service that is not ready yet costs that one stream
(reset, logged with peer and protocol) and nothing else.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol

from ..logs import get_logger

log = get_logger(__name__)

StreamHandler = Callable[[INetStream], Awaitable[None]]

# A handler that has not finished its first read/write in this long is a peer holding a slot.
RESET_TIMEOUT = 5.0


def guarded(protocol: str, handler: StreamHandler) -> StreamHandler:
    """Wrap ``handler`` so that nothing it raises reaches py-libp2p."""

    async def run(stream: INetStream) -> None:
        try:
            await handler(stream)
        except Exception as exc:  # the edge: log with context, drop the stream, keep running
            peer = _peer_of(stream)
            log.warning("stream handler failed; stream reset", protocol=protocol, peer=peer,
                        error=f"{type(exc).__name__}: {exc}")
            with trio.move_on_after(RESET_TIMEOUT), contextlib.suppress(Exception):
                await stream.reset()

    run.__name__ = getattr(handler, "__name__", "handler")
    return run


def set_guarded_handler(host: IHost, protocol: str, handler: StreamHandler) -> None:
    """``host.set_stream_handler`` with the guard around the handler."""
    host.set_stream_handler(TProtocol(protocol), guarded(protocol, handler))


def _peer_of(stream: INetStream) -> str:
    try:
        return str(stream.muxed_conn.peer_id)
    except Exception:
        return "?"
