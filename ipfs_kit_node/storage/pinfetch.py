"""``pin add`` of content held elsewhere: fetch what is missing, then pin, as Kubo does.

The walk runs ``FETCH_CONCURRENCY`` workers over one queue of CIDs (many wants in flight, not
one block at a time); each block arrives verified and stored through the fetcher (the node's
Bitswap, which asks connected peers and routing). Everything it stores or finds is held
(``TieredStore.hold``) so a GC running meanwhile spares it; the pin is recorded only once every
block is local, in one transaction with its blocks' counts. Cancelling (Ctrl-C, the HTTP
client leaving) cancels the walk: Bitswap drops the wants of a caller that left, and no pin is
recorded. A block nobody sends within ``timeout`` fails the whole pin with an error naming it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import trio
from multiformats import CID

from ..errors import BlockNotFoundError, BlockUnavailableError, IpfsKitError, StoreError
from .blocks import CidLike, key_of, to_cid
from .reads import inline_bytes
from .store import TieredStore

FETCH_CONCURRENCY = 64
DEFAULT_TIMEOUT = 60.0
MAX_ATTEMPTS = 3  # a pin whose blocks GC took between fetch and record is fetched again


class BlockFetcher(Protocol):
    """The narrow part of Bitswap a pin needs (``Components.fetch``); a ``prefetch(cids)``
    method, if it has one, is told each node's links at once."""

    async def fetch(self, cid: CidLike, timeout: float = ...) -> bytes: ...


@dataclass
class Progress:
    """Blocks (and bytes) walked so far; ``fetched`` came from the network."""

    blocks: int = 0
    bytes: int = 0
    fetched: int = 0
    fetched_bytes: int = 0


async def fetch_dag(store: TieredStore, fetcher: BlockFetcher | None, root: CidLike, *,
                    recursive: bool = True, timeout: float = DEFAULT_TIMEOUT,
                    progress: Callable[[Progress], None] | None = None) -> Progress:
    """Make every block of the DAG (or the root, not ``recursive``) local; call it inside
    ``store.hold()`` so they stay until pinned. Raises BlockUnavailableError naming the block.
    """
    state = Progress()
    seen: set[bytes] = set()
    send, receive = trio.open_memory_channel[CID](float("inf"))
    pending = 0
    done = trio.Event()
    root = to_cid(root)
    prefetch: Callable[[list[CID]], None] | None = getattr(fetcher, "prefetch", None)

    def queue(cid: CID) -> None:
        nonlocal pending
        key = key_of(cid)
        if key in seen:
            return
        seen.add(key)
        pending += 1
        send.send_nowait(cid)

    async def one(cid: CID) -> None:
        # An identity CID carries its block (``get`` answers it from the CID): never fetched.
        local = inline_bytes(cid) is not None or store.is_local(cid) or store.is_remote(cid)
        if local:
            data = await store.get(cid)
        elif fetcher is None:
            raise BlockNotFoundError(str(cid), "not in the local store and nothing to fetch "
                                     "it with")
        else:
            try:
                data = await fetcher.fetch(cid, timeout)
            except BlockUnavailableError as exc:
                raise BlockUnavailableError(
                    str(cid), f"needed by the pin of {root}: {exc}") from None
            state.fetched += 1
            state.fetched_bytes += len(data)
            await store.put(cid, data, hashed=True)  # already here: held, not rewritten
        state.blocks += 1
        state.bytes += len(data)
        if recursive:
            children = store.links(cid, data)
            if prefetch is not None:  # one wantlist message for a node's links, not one each
                # Never an identity CID: its bytes are in it (a want for one was sent to
                # peers and stayed in the wantlist after the pin).
                prefetch([c for c in children
                          if key_of(c) not in seen and inline_bytes(c) is None])
            for child in children:
                queue(child)
        if progress is not None:
            progress(state)

    async def worker() -> None:
        nonlocal pending
        async for cid in receive:
            await one(cid)
            pending -= 1
            if pending == 0:
                done.set()

    queue(root)
    try:
        async with trio.open_nursery() as nursery:
            for _ in range(FETCH_CONCURRENCY if recursive else 1):
                nursery.start_soon(worker)
            await done.wait()
            nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:  # the first worker's typed error, as it was raised
        _, rest = group.split(trio.Cancelled)
        leaves = _leaves(rest) if rest is not None else []
        typed = [e for e in leaves if isinstance(e, IpfsKitError)]
        if typed:
            raise typed[0] from None
        raise
    return state


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


async def pin_fetching(store: TieredStore, fetcher: BlockFetcher | None, cid: CidLike, *,
                       recursive: bool = True, name: str = "",
                       timeout: float = DEFAULT_TIMEOUT,
                       progress: Callable[[Progress], None] | None = None) -> Progress:
    """Fetch what is missing, then pin: Kubo's ``pin add``."""
    cid = to_cid(cid)
    with store.hold():
        for attempt in range(1, MAX_ATTEMPTS + 1):
            state = await fetch_dag(store, fetcher, cid, recursive=recursive, timeout=timeout,
                                    progress=progress)
            try:
                await store.pin(cid, recursive=recursive, name=name)
                return state
            except BlockNotFoundError:
                if attempt == MAX_ATTEMPTS:
                    raise
    raise StoreError("unreachable")  # pragma: no cover


async def update_fetching(store: TieredStore, fetcher: BlockFetcher | None, old: CidLike,
                          new: CidLike, *, unpin: bool = True,
                          timeout: float = DEFAULT_TIMEOUT,
                          progress: Callable[[Progress], None] | None = None) -> Progress:
    """Kubo's ``pin update``: fetch only what NEW adds (blocks shared with OLD are local
    already), then swap the pins in one transaction."""
    if not store.update_needed(old, new):  # refused or nothing to do: nothing fetched
        return Progress()
    with store.hold():
        state = await fetch_dag(store, fetcher, new, timeout=timeout, progress=progress)
        await store.update_pin(old, new, unpin=unpin)
    return state


PROGRESS_INTERVAL = 0.5  # Kubo's pin add --progress ticker


async def stream_job(store: TieredStore, job: Callable[[Callable[[Progress], None]], Any], *,
                     interval: float = PROGRESS_INTERVAL,
                     ) -> AsyncIterator[Progress | BaseException | None]:
    """Run ``job(progress)`` in the store's nursery and yield its progress every ``interval``
    seconds as Kubo's ``pin add --progress`` does (a tick also keeps the client's read
    timeout from firing on a slow DAG), then the last progress, then None when it is done (or
    the exception that ended it). Closing this generator (the client left) cancels the job.
    Without a running store it runs inline, with no progress.
    """
    nursery = store.background
    if nursery is None:
        try:
            await job(lambda _: None)
        except Exception as exc:
            yield exc
            return
        yield None
        return
    send, receive = trio.open_memory_channel[BaseException | None](1)
    scope = trio.CancelScope()
    latest = Progress()

    def report(state: Progress) -> None:
        nonlocal latest
        latest = state

    async def run() -> None:
        outcome: BaseException | None = None
        with scope:
            try:
                await job(report)
            except Exception as exc:
                outcome = exc
        with contextlib.suppress(trio.BrokenResourceError):
            if scope.cancelled_caught:
                outcome = StoreError("cancelled")
            await send.send(outcome)
        await send.aclose()

    nursery.start_soon(run)
    try:
        while True:
            outcome: BaseException | Progress | None = latest  # a tick, unless it ends
            with trio.move_on_after(interval):  # no yield inside: the caller runs then
                try:
                    outcome = await receive.receive()
                except trio.EndOfChannel:
                    return
            if isinstance(outcome, Progress):
                yield Progress(**vars(outcome))
                continue
            if outcome is None and latest.blocks:
                yield Progress(**vars(latest))
            yield outcome
            return
    finally:
        scope.cancel()
        await receive.aclose()
