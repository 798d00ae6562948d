"""Prometheus metrics of the HTTP servers: requests by server, route and status, bytes sent,
and a latency histogram; one set per registry, shared by every server of the node."""

from __future__ import annotations

import weakref

from prometheus_client import CollectorRegistry, Counter, Histogram

_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, HttpMetrics] = \
    weakref.WeakKeyDictionary()


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ("server", "route", "status")
        self.requests = Counter("ipfs_kit_http_requests", "HTTP requests answered",
                                labels, registry=registry)
        self.bytes = Counter("ipfs_kit_http_response_bytes", "HTTP response body bytes sent",
                             ("server", "route"), registry=registry)
        self.latency = Histogram(
            "ipfs_kit_http_request_seconds", "Time from request head to the end of the answer",
            ("server", "route"), registry=registry,
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120, float("inf")))

    @classmethod
    def of(cls, registry: CollectorRegistry) -> HttpMetrics:
        """The one set of a registry (a second server on it shares the first's)."""
        metrics = _BY_REGISTRY.get(registry)
        if metrics is None:
            metrics = _BY_REGISTRY[registry] = cls(registry)
        return metrics

    def observe(self, server: str, route: str, status: int, sent: int, seconds: float) -> None:
        self.requests.labels(server, route, str(status or "none")).inc()
        if sent:
            self.bytes.labels(server, route).inc(sent)
        self.latency.labels(server, route).observe(seconds)
