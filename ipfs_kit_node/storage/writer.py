"""Storing a stream of blocks while the next ones arrive: the group commit of an upload.

An upload (``block/put-many``, RPC ``add``) used to receive 1 MiB, then wait for that batch's
fsyncs and index commit before reading on, so the socket sat idle for every fsync round. Here
a storer task stores whatever has queued while the last batch was being made durable: the
batch grows with the disk's fsync latency (one round of fsyncs and one index commit for many
blocks), and receiving never waits for the disk unless ``QUEUED_BYTES`` are already queued.

A block is only reported stored once the batch holding it is fsynced and indexed
(``TieredStore.put_many``); ``close`` returns after the last batch is, so a caller that answers
after leaving ``block_writer`` acknowledges only durable blocks (``[storage] sync`` holds).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import trio
from multiformats import CID

from .store import TieredStore

#: Most one batch takes (blocks, bytes): the bound of one index transaction and its memory.
BATCH_BLOCKS = 1024
BATCH_BYTES = 8 << 20
#: Bytes received but not yet being stored before receiving waits (the upload's memory).
QUEUED_BYTES = 8 << 20


class BlockWriter:
    """Blocks handed to ``add`` are stored in the background, in order, a batch at a time."""

    def __init__(self, store: TieredStore, *, hashed: bool) -> None:
        self._store = store
        self._hashed = hashed
        self._queue: list[tuple[CID | bytes, bytes]] = []
        self._queued_bytes = 0
        self._closed = False
        self._work = trio.lowlevel.ParkingLot()
        self._room = trio.lowlevel.ParkingLot()
        self.new = 0  # blocks that were not in the store before
        self.batches = 0

    async def add(self, cid: CID | bytes, data: bytes) -> None:
        """Queue a block; waits only while ``QUEUED_BYTES`` are already queued."""
        while self._queued_bytes >= QUEUED_BYTES:
            await self._room.park()
        self._queue.append((cid, data))
        self._queued_bytes += len(data)
        self._work.unpark_all()

    def _close(self) -> None:
        self._closed = True
        self._work.unpark_all()

    async def _run(self) -> None:
        while True:
            while not self._queue:
                if self._closed:
                    return
                await self._work.park()
            take = size = 0
            for _, data in self._queue:
                if take and (take >= BATCH_BLOCKS or size + len(data) > BATCH_BYTES):
                    break
                take += 1
                size += len(data)
            batch, self._queue = self._queue[:take], self._queue[take:]
            self._queued_bytes -= size
            self._room.unpark_all()
            self.new += await self._store.put_many(batch, hashed=self._hashed)
            self.batches += 1


@contextlib.asynccontextmanager
async def block_writer(store: TieredStore, *, hashed: bool = False
                       ) -> AsyncIterator[BlockWriter]:
    """A ``BlockWriter`` whose blocks are all stored (durably) when the block exits without
    an error; a storing error cancels the block and is raised (trio groups it; the HTTP edge
    unwraps a lone one). ``hashed`` as for ``TieredStore.put``."""
    writer = BlockWriter(store, hashed=hashed)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer._run)
        try:
            yield writer
        finally:
            writer._close()
