"""Kademlia DHTs as Kubo runs them: LAN (/ipfs/lan/kad/1.0.0) and WAN (/ipfs/kad/1.0.0),
provider records and peer lookups, Kubo/Helia compatible.

``service`` is a thin trio shell over py-libp2p's KadDHT; see its docstring for what it adds.
"""

from .service import (
    KAD_PROTOCOL,
    LAN_KAD_PROTOCOL,
    MODES,
    REPROVIDE_INTERVAL,
    Dht,
    ProvideRoots,
    is_public,
    provider_key,
)

__all__ = ["KAD_PROTOCOL", "LAN_KAD_PROTOCOL", "MODES", "REPROVIDE_INTERVAL", "Dht",
           "ProvideRoots", "is_public", "provider_key"]
