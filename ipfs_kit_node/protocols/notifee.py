"""A py-libp2p network notifee that ignores everything: subclasses override what they need."""

from __future__ import annotations

import multiaddr
from libp2p.abc import INetConn, INetStream, INetwork, INotifee


class ConnectionNotifee(INotifee):
    async def connected(self, network: INetwork, conn: INetConn) -> None:
        pass

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        pass

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def listen(self, network: INetwork, addr: multiaddr.Multiaddr) -> None:
        pass

    async def listen_close(self, network: INetwork, addr: multiaddr.Multiaddr) -> None:
        pass
