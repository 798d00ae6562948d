"""Kademlia DHT (/ipfs/kad/1.0.0): provider records and peer lookups, Kubo/Helia compatible.

``service`` is a thin trio shell over py-libp2p's KadDHT; see its docstring for what it adds.
"""

from .service import KAD_PROTOCOL, MODES, REPROVIDE_INTERVAL, Dht, ProvideRoots, provider_key

__all__ = ["KAD_PROTOCOL", "MODES", "REPROVIDE_INTERVAL", "Dht", "ProvideRoots", "provider_key"]
