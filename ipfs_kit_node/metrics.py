"""Prometheus metrics of one node, in a registry of its own (served at /metrics)."""

from __future__ import annotations

import time
from collections.abc import Callable
from importlib.metadata import version

from prometheus_client import CollectorRegistry, Gauge, Info, generate_latest

from . import __version__
from .loopwatch import LoopWatch


class NodeMetrics:
    def __init__(self, role: str, peer_id: str, peer_count: Callable[[], int],
                 loop: LoopWatch | None = None) -> None:
        self.loop = loop or LoopWatch()
        self.registry = CollectorRegistry(auto_describe=True)
        self._started = time.monotonic()
        Info("ipfs_kit_build", "Build and identity of this node", registry=self.registry).info(
            {"version": __version__, "libp2p": version("libp2p"), "role": role,
             "peer_id": peer_id}
        )
        Gauge("ipfs_kit_peers", "Connected peers", registry=self.registry).set_function(
            lambda: float(peer_count())
        )
        Gauge("ipfs_kit_uptime_seconds", "Seconds since the node started",
              registry=self.registry).set_function(self.uptime)
        Gauge("ipfs_kit_loop_longest_stall_seconds",
              "Longest time one task step held the event loop since start",
              registry=self.registry).set_function(lambda: self.loop.longest)
        Gauge("ipfs_kit_loop_stalls", "Task steps that held the event loop over 50 ms",
              registry=self.registry).set_function(lambda: float(self.loop.stalls))

    def uptime(self) -> float:
        return time.monotonic() - self._started

    def render(self) -> bytes:
        return generate_latest(self.registry)
