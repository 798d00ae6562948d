"""The leecher role: submits tasks and consumes results; runs none.

Its store is its cache (a small ``storage.max_size`` in config/leecher.toml): outputs read
with ``task result`` or ``cat`` stay there until GC needs the room.
"""

from __future__ import annotations

from .base import MeshMember


class LeecherRole(MeshMember):
    name = "leecher"
