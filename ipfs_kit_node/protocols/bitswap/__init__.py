"""Bitswap 1.2.0 (and 1.1.0 / 1.0.0 peers): serve blocks from the store, fetch DAGs from peers.

``codec`` (wire format), ``ledger`` (serving decisions) and ``wantlist`` (fetching decisions)
are plain objects with no I/O; ``network`` is the trio shell that runs them on py-libp2p streams.
"""

from .codec import Message, Presence, ProtocolViolation, WantEntry, WantType
from .network import PROTOCOLS, Bitswap

__all__ = ["PROTOCOLS", "Bitswap", "Message", "Presence", "ProtocolViolation", "WantEntry",
           "WantType"]
