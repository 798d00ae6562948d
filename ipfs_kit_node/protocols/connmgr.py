"""Connection manager: the role's low/high water marks and grace period (py-libp2p's pruner
applies them, least valuable connections first), plus what only the node knows: configured
masters and peers in an active Bitswap session are protected, and peers we exchange blocks
with are worth more than idle ones.
"""

from __future__ import annotations

import trio
from libp2p.abc import IHost
from libp2p.peer.id import ID

from ..logs import get_logger
from ..service import TaskStatus
from .bitswap import Bitswap

log = get_logger(__name__)

MASTER_TAG = "ipfs-kit:master"
SESSION_TAG = "ipfs-kit:bitswap-session"
VALUE_TAG = "ipfs-kit:bitswap"
REFRESH = 1.0


class ConnManager:
    name = "connmgr"

    def __init__(self, host: IHost, bitswap: Bitswap, masters: tuple[str, ...] = ()) -> None:
        self.host = host
        self.bitswap = bitswap
        self.masters = [ID.from_base58(m) for m in masters]
        self._session: set[ID] = set()

    @property
    def _swarm(self):  # type: ignore[no-untyped-def]  # py-libp2p's Swarm
        return self.host.get_network()

    def is_protected(self, peer: ID) -> bool:
        return bool(self._swarm.tag_store.is_protected(peer))

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        for peer in self.masters:
            self._swarm.protect(peer, MASTER_TAG)
        task_status.started()
        while True:
            self.refresh()
            await trio.sleep(REFRESH)

    def refresh(self) -> None:
        """Protect peers we are fetching from right now; value peers by blocks exchanged."""
        active = self.bitswap.session_peers()
        for peer in active - self._session:
            self._swarm.protect(peer, SESSION_TAG)
        for peer in self._session - active:
            self._swarm.unprotect(peer, SESSION_TAG)
        self._session = active
        for peer, (received, sent) in self.bitswap.exchanged().items():
            self._swarm.tag_peer(peer, VALUE_TAG, min(100, received + sent))
