"""The master keeps task results: each result CID's DAG is fetched from the worker over
Bitswap and pinned here (and on the configured remote pinning targets, durably queued).

Best effort and bounded: a full queue or a fetch that fails is logged, never blocks outcomes.
"""

from __future__ import annotations

import structlog
import trio

from ..components import Components
from ..errors import IpfsKitError
from ..unixfs.exporter import fetch_dag

PIN_CONCURRENCY = 4  # pinner loops the master runs
PIN_QUEUE = 10_000  # result CIDs waiting to be pinned
PIN_TIMEOUT = 120.0


class ResultPinner:
    def __init__(self, c: Components, log: structlog.stdlib.BoundLogger) -> None:
        self.c = c
        self.log = log
        self._send: trio.MemorySendChannel[str]
        self._queue: trio.MemoryReceiveChannel[str]
        self._send, self._queue = trio.open_memory_channel(PIN_QUEUE)

    def offer(self, cid: str) -> None:
        """Queue a result CID without waiting (dropped, with a warning, when full)."""
        try:
            self._send.send_nowait(cid)
        except trio.WouldBlock:
            self.log.warning("result pin queue full; not pinned", cid=cid)

    async def run(self) -> None:
        """Fetch each result's DAG from the worker over Bitswap and pin it here."""
        async for cid in self._queue:
            try:
                with trio.fail_after(PIN_TIMEOUT):
                    await fetch_dag(self.c.fetch, cid)
                    await self.c.blocks.store.pin(cid, recursive=True)
                self.log.debug("result pinned", cid=cid)
                for target in self.c.pins.configured:  # and on Kubo / Cluster, durably queued
                    await self.c.pins.pin(cid, target, name="ipfs-kit-node task result")
            except (IpfsKitError, OSError, trio.TooSlowError) as exc:
                self.log.warning("result not pinned", cid=cid, error=str(exc) or "timeout")
