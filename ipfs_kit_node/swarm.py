"""Dialling peers: one place for `swarm connect` and bootstrap."""

from __future__ import annotations

import random

import multiaddr
import trio
from libp2p.abc import IHost
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr

from .errors import ApiError, PeerBrokenError
from .logs import get_logger
from .protocols.peers import PeerBook
from .service import TaskStatus

log = get_logger(__name__)

DIAL_TIMEOUT = 10.0
MAX_ADDR_LENGTH = 1024


def parse_peer_addr(text: str) -> tuple[ID, multiaddr.Multiaddr]:
    """A dialable multiaddr ending in /p2p/<peer ID>, or a clear ApiError (400)."""
    if len(text) > MAX_ADDR_LENGTH:
        raise ApiError(f"a peer address of {len(text)} characters is too long (at most "
                       f"{MAX_ADDR_LENGTH}); expected e.g. /ip4/127.0.0.1/tcp/4001/p2p/12D3KooW...",
                       status=400)
    try:
        info = info_from_p2p_addr(multiaddr.Multiaddr(text))
    except Exception as exc:
        raise ApiError(
            f"{text!r} is not a peer address ({exc}); "
            "expected e.g. /ip4/127.0.0.1/tcp/4001/p2p/12D3KooW...",
            status=400,
        ) from None
    return info.peer_id, multiaddr.Multiaddr(text)


async def connect(host: IHost, peers: PeerBook, text: str, how: str = "dial") -> ID:
    peer_id, addr = parse_peer_addr(text)
    if peer_id == host.get_id():
        raise ApiError("cannot connect to ourselves", status=400)
    peers.note_found(peer_id, how)
    try:
        with trio.fail_after(DIAL_TIMEOUT):
            await host.connect(info_from_p2p_addr(addr))
    except trio.TooSlowError:
        raise PeerBrokenError(
            f"connecting to {text} timed out after {DIAL_TIMEOUT:.0f} s"
        ) from None
    except Exception as exc:
        raise PeerBrokenError(f"connecting to {text} failed: {exc}") from exc
    return peer_id


class Bootstrapper:
    """Dials the configured bootstrap peers in the background, retrying with backoff."""

    name = "bootstrap"

    def __init__(self, host: IHost, peers: PeerBook, addrs: tuple[str, ...]) -> None:
        self._host = host
        self._peers = peers
        self._addrs = addrs

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        async with trio.open_nursery() as nursery:
            for addr in self._addrs:
                nursery.start_soon(self._keep_trying, addr)
            task_status.started()

    async def _keep_trying(self, addr: str, attempts: int = 8) -> None:
        delay = 0.5
        for _ in range(attempts):
            try:
                peer_id = await connect(self._host, self._peers, addr, how="bootstrap")
            except (PeerBrokenError, ApiError) as exc:
                log.info("bootstrap dial failed; will retry", addr=addr, error=str(exc),
                         retry_in=round(delay, 1))
                await trio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, 60.0)
                continue
            log.info("bootstrap peer connected", peer=str(peer_id), addr=addr)
            return
        log.warning("bootstrap peer unreachable; gave up", addr=addr, attempts=attempts)
