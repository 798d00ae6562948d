"""Our subclasses of py-libp2p's connection layers (Yamux, Noise), tuned for bulk transfer.

Each class says what py-libp2p 0.8.1 does and why we differ; ``host.build_host`` registers
them in place of the library's own. ``notify`` skips the swarm's no-op stream notifications.
"""

from . import notify as _notify  # noqa: F401 - installs the swarm's stream-event filter
from .noise import NoiseTransport
from .yamux import Yamux, YamuxStream

__all__ = ["NoiseTransport", "Yamux", "YamuxStream"]
