"""Storing a stream of blocks while the next ones arrive: the group commit of an upload.

An upload (``block/put-many``, RPC ``add``) used to receive 1 MiB, then wait for that batch's
fsyncs and index commit before reading on, so the socket sat idle for every fsync round. Here
a storer task stores whatever has queued while the last batch was being made durable: the
batch grows with the disk's fsync latency (one round of fsyncs and one index commit for many
blocks), and receiving never waits for the disk unless ``QUEUED_BYTES`` are already queued.
Two batches are stored at once (``STORE_DEPTH``): one's files are written while the other's
fsyncs and index commit are waited on, which left the storer's thread idle a fifth of the time
(64 MiB through the writer alone, alternating, medians of 6-14 runs: 182-635 -> 170-478 ms).
An upload holds at most 8 MiB queued and two 4 MiB batches.

Blocks that are not trusted (an upload's: the client hashed them, we check) are verified by
a second task a couple of MiB at a time, in its own worker thread, while the storer writes and
fsyncs the batch before (verifying inside the storer's thread put 55 ms of a 64 MiB add's
~170 ms of storing in series with the writes).

When the upload will pin (``links=True``), the verifier also notes the children of each
dag-pb block it checked (``links``), so the recursive pin at the end of an upload walks the
DAG without reading every leaf back (a CIDv0 add's leaves are dag-pb: a 64 MiB add read and
parsed 256 of them to learn they have no links). They are kept as raw CID bytes, one blob a
node (``LinkTable``), within ``NOTED_BYTES``: as CID objects (~376 B each) 48 MiB of dense
link-only dag-pb grew the daemon by 533 MiB.

A block is only reported stored once the batch holding it is fsynced and indexed
(``TieredStore.put_many``); ``close`` returns after the last batch is, so a caller that answers
after leaving ``block_writer`` acknowledges only durable blocks (``[storage] sync`` holds).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence

import trio
from multiformats import CID

from ..cid import cid_from_bytes
from ..errors import StoreError
from .blocks import key_of, verify
from .store import DAG_PB, TieredStore

#: Most one batch takes (blocks, bytes): the bound of one index transaction and its memory.
BATCH_BLOCKS = 1024
BATCH_BYTES = 4 << 20
#: Batches being stored at once: one's files are written while the other waits on fsyncs.
STORE_DEPTH = 2
#: Bytes received but not yet being stored before receiving waits (the upload's memory).
QUEUED_BYTES = 8 << 20
#: Most bytes verified in one worker-thread hop.
VERIFY_BYTES = 2 << 20
#: Most memory the children an upload notes for its pin take (estimated: ``NODE_COST`` a node
#: plus its children's CID bytes): ~1,000,000 CIDv0 links, or the nodes of a 16 GiB file of
#: 256 KiB leaves. Past it the pin reads the rest back, as any pin does.
NOTED_BYTES = 40 << 20
#: A noted node's estimated cost besides its children: dict slot, key and blob objects.
NODE_COST = 160


class LinkTable(Mapping[bytes, Sequence[CID]]):
    """Children of dag-pb nodes by store key, for ``TieredStore.pin(links=)``: each node's
    children are one bytes blob of length-prefixed binary CIDs, made into CID objects only
    when the pin's walk asks for that node. Nodes past ``budget`` are not noted (the walk
    reads those back)."""

    def __init__(self, budget: int = NOTED_BYTES) -> None:
        self._nodes: dict[bytes, bytes] = {}
        self._budget = budget
        self.cost = 0

    @property
    def links(self) -> int:
        """Children noted, over every node."""
        return sum(len(self[key]) for key in self._nodes)

    @property
    def full(self) -> bool:
        return self.cost >= self._budget

    def note(self, key: bytes, children: bytes) -> None:
        """Keep ``children`` (as ``children_of`` gives) unless the budget is spent."""
        cost = NODE_COST + len(children)
        if self.cost + cost > self._budget or key in self._nodes:
            return
        self._nodes[key] = children
        self.cost += cost

    def __getitem__(self, key: bytes) -> list[CID]:
        blob = self._nodes[key]
        out, pos = [], 0
        while pos < len(blob):
            end = pos + 1 + blob[pos]
            out.append(cid_from_bytes(blob[pos + 1:end]))
            pos = end
        return out

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._nodes)

    def __len__(self) -> int:
        return len(self._nodes)


def children_of(cid: CID, data: bytes) -> bytes | None:
    """The children of a dag-pb block as ``LinkTable`` keeps them, read as a pin's walk reads
    them (``TieredStore.links``); None for a CID over 255 bytes (such a node is left for the
    pin to read back). StoreError for malformed dag-pb."""
    parts: list[bytes] = []
    for child in TieredStore.links(cid, data):
        raw = bytes(child)
        if len(raw) > 255:
            return None
        parts += (len(raw).to_bytes(1, "big"), raw)
    return b"".join(parts)


class BlockWriter:
    """Blocks handed to ``add`` are verified and stored in the background, in order, a batch
    at a time. The queue's first ``_verified`` blocks are checked and ready to store."""

    def __init__(self, store: TieredStore, *, hashed: bool, links: bool = False) -> None:
        self._store = store
        self._hashed = hashed
        self._note = links
        self._queue: list[tuple[CID | bytes, bytes]] = []
        self._queued_bytes = 0
        self._verified = 0
        self._closed = False
        self._work = trio.lowlevel.ParkingLot()  # the verifier waits here for blocks
        self._ready = trio.lowlevel.ParkingLot()  # the storer waits here for verified ones
        self._room = trio.lowlevel.ParkingLot()
        self._slot = trio.lowlevel.ParkingLot()  # the storer waits here for a batch to end
        self._storing = 0
        self.new = 0  # blocks that were not in the store before
        self.batches = 0
        #: store key -> children, of the dag-pb blocks verified here (for ``store.pin``),
        #: noted only when the writer was made with ``links=True``
        self.links = LinkTable()

    async def add(self, cid: CID | bytes, data: bytes) -> None:
        """Queue a block; waits only while ``QUEUED_BYTES`` are already queued."""
        while self._queued_bytes >= QUEUED_BYTES:
            await self._room.park()
        self._queue.append((cid, data))
        self._queued_bytes += len(data)
        if self._hashed:
            self._verified += 1
            self._ready.unpark_all()
        else:
            self._work.unpark_all()

    def _close(self) -> None:
        self._closed = True
        self._work.unpark_all()
        self._ready.unpark_all()

    async def _verify(self) -> None:
        """Check the blocks behind the verified ones against their CIDs (HashMismatchError
        ends the upload before any of them is stored)."""
        while True:
            while self._verified == len(self._queue):
                if self._closed:
                    return
                await self._work.park()
            start = self._verified
            end = start
            size = 0
            while end < len(self._queue) and (end == start or size < VERIFY_BYTES):
                size += len(self._queue[end][1])
                end += 1
            found = await trio.to_thread.run_sync(
                _verify_all, self._queue[start:end], self._note and not self.links.full)
            for key, children in found:
                self.links.note(key, children)
            # The storer only takes verified blocks from the front meanwhile: the ones just
            # checked now follow the verified ones still queued.
            self._verified += end - start
            self._ready.unpark_all()

    async def _run(self) -> None:
        async with trio.open_nursery() as nursery:
            while True:
                while not self._verified:
                    if self._closed and not self._queue:
                        return  # the nursery waits for the batches still being stored
                    await self._ready.park()
                while self._storing >= STORE_DEPTH:
                    await self._slot.park()
                take = size = 0
                for _, data in self._queue[:self._verified]:
                    if take and (take >= BATCH_BLOCKS or size + len(data) > BATCH_BYTES):
                        break
                    take += 1
                    size += len(data)
                batch, self._queue = self._queue[:take], self._queue[take:]
                self._verified -= take
                self._queued_bytes -= size
                self._room.unpark_all()
                self._storing += 1
                nursery.start_soon(self._put, batch)

    async def _put(self, batch: list[tuple[CID | bytes, bytes]]) -> None:
        try:
            new = await self._store.put_many(batch, hashed=True)
            self.new += new  # not `+= await`: that reads self.new before another batch ends
            self.batches += 1
        finally:
            self._storing -= 1
            self._slot.unpark_all()


def _verify_all(blocks: list[tuple[CID | bytes, bytes]], record: bool
                ) -> list[tuple[bytes, bytes]]:
    """Check each block against its CID; with ``record``, the children of the dag-pb ones
    (read from bytes just verified, so the same as a read of the stored block would give)."""
    found: list[tuple[bytes, bytes]] = []
    for cid_like, data in blocks:
        cid = cid_from_bytes(cid_like) if isinstance(cid_like, bytes) else cid_like
        verify(cid, data)
        if record and cid.codec.code == DAG_PB:
            # malformed dag-pb is stored as it is; a pin's walk reads it and says so
            with contextlib.suppress(StoreError):
                if (noted := children_of(cid, data)) is not None:
                    found.append((key_of(cid), noted))
    return found


@contextlib.asynccontextmanager
async def block_writer(store: TieredStore, *, hashed: bool = False, links: bool = False
                       ) -> AsyncIterator[BlockWriter]:
    """A ``BlockWriter`` whose blocks are all stored (durably) when the block exits without
    an error; a storing error cancels the block and is raised (trio groups it; the HTTP edge
    unwraps a lone one). ``hashed`` as for ``TieredStore.put``; ``links``: note the verified
    blocks' children for a pin at the end."""
    writer = BlockWriter(store, hashed=hashed, links=links)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer._run)
        if not hashed:
            nursery.start_soon(writer._verify)
        try:
            yield writer
        finally:
            writer._close()
