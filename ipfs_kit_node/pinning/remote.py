"""The store's remote tier, backed by the pins we placed on Kubo or IPFS Cluster.

A pinned block may leave our disk when the root of a DAG containing it is pinned remotely:
Kubo reports it pinned, or Cluster reports it pinned on at least replication-min peers. We
learn roots from the pin queue (applied pin intents), confirm them with the service, and
remember every block key under a confirmed root. A block read after eviction is fetched back
over Bitswap from the peers that hold it (we dial their addresses first).
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

import trio
from multiformats import CID

from ..cid import to_cid
from ..errors import BlockNotFoundError, IpfsKitError, PinningError
from ..logs import get_logger
from ..service import TaskStatus, keep_running
from ..storage.blocks import key_of
from ..storage.pinset import links, walk_dag
from ..storage.store import TieredStore

log = get_logger(__name__)

REFRESH = 60.0
FETCH_TIMEOUT = 60.0
HOLDERS_TTL = 60.0


class Holder(Protocol):
    name: str

    async def is_pinned(self, cid: str) -> bool: ...

    async def holders(self, cid: str) -> list[str]: ...


class BlockFetcher(Protocol):
    async def fetch(self, cid: CID, timeout: float = ...) -> bytes: ...


class PinnedElsewhere:
    name = "pinning"

    def __init__(self, targets: dict[str, Holder], store: Callable[[], TieredStore],
                 fetcher: BlockFetcher, dial: Callable[[str], Awaitable[object]]) -> None:
        self.targets = targets
        self._store = store
        self._fetcher = fetcher
        self._dial = dial  # async (multiaddr) -> None
        self.roots: dict[str, str] = {}  # root CID -> target that holds it
        self.confirmed: dict[str, frozenset[bytes]] = {}  # root -> keys of its DAG
        self._safe: set[bytes] = set()
        self._fetching: contextvars.ContextVar[frozenset[bytes]] = contextvars.ContextVar(
            "remote_fetching", default=frozenset())
        self._holder_cache: dict[tuple[str, str], tuple[list[str], float]] = {}
        self._wake = trio.Event()

    # -- learning which roots are held -------------------------------------------------------

    def held(self, cid: str, target: str) -> None:
        """The queue pinned ``cid`` on ``target``: confirm it at the next refresh."""
        self.roots[cid] = target
        self._wake.set()

    def released(self, cid: str, target: str) -> None:
        if self.roots.get(cid) == target:
            del self.roots[cid]
            self.confirmed.pop(cid, None)
            self._rebuild()

    def _rebuild(self) -> None:
        self._safe = set().union(*self.confirmed.values()) if self.confirmed else set()

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await keep_running("remote tier refresh", self._loop)

    async def _loop(self) -> None:
        full = True
        while True:
            await self.refresh(only_new=not full)
            self._wake = trio.Event()
            with trio.move_on_after(REFRESH) as timer:
                await self._wake.wait()
            full = timer.cancelled_caught  # a wake checks the new roots; the timer, all

    async def refresh(self, only_new: bool = False) -> None:
        """Ask each service about the roots we pinned there; remember the confirmed DAGs."""
        for root, target in list(self.roots.items()):
            if only_new and root in self.confirmed:
                continue
            holder = self.targets.get(target)
            try:
                pinned = holder is not None and await holder.is_pinned(root)
            except (IpfsKitError, OSError) as exc:
                log.info("remote pin not confirmed", cid=root, target=target, error=str(exc))
                self.confirmed.pop(root, None)
                continue
            try:
                if pinned and root not in self.confirmed:
                    keys = await self._store().dag_keys(root)
                    self.confirmed[root] = frozenset(keys)
                    log.info("remote pin confirmed; its blocks may leave the disk", cid=root,
                             target=target, blocks=len(keys))
                elif not pinned and root in self.confirmed:
                    # Unpinned behind our back: fetch what we evicted while someone has it.
                    log.warning("remote pin gone; bringing evicted blocks home", cid=root,
                                target=target)
                    self.confirmed.pop(root, None)
                    self._rebuild()
                    await self.restore(root)
            except (IpfsKitError, OSError) as exc:
                log.warning("remote pin check failed", cid=root, target=target, error=str(exc))
        self._rebuild()

    # -- RemoteTier --------------------------------------------------------------------------

    async def is_safely_held(self, cid: CID) -> bool:
        return key_of(cid) in self._safe

    async def fetch(self, cid: CID) -> bytes | None:
        key = key_of(cid)
        fetching = self._fetching.get()
        if key in fetching:
            return None  # this very fetch failed to store the block: do not loop
        token = self._fetching.set(fetching | {key})  # per task: other readers may fetch too
        try:
            await self._dial_holders(cid)
            return await self._fetcher.fetch(cid, timeout=FETCH_TIMEOUT)
        except (BlockNotFoundError, PinningError) as exc:
            log.warning("evicted block not fetched back", cid=str(cid), error=str(exc))
            return None
        finally:
            self._fetching.reset(token)

    async def restore(self, root: str) -> int:
        """Bring a DAG's evicted blocks back to our disk (before the remote lets go of it);
        returns how many blocks were read. Raises BlockNotFoundError if one cannot be had."""
        store = self._store()
        read = 0
        async for step in walk_dag(lambda _: None, to_cid(root)):  # the pins' walk
            data = await store.get(step.cid)  # an evicted block comes back through fetch()
            step.children = links(step.cid, data)
            read += 1
        return read

    async def _dial_holders(self, cid: CID) -> None:
        """Dial a peer that holds the block: the service holding a confirmed root with it,
        else (after a restart, before DAGs are confirmed again) any service we pinned on."""
        roots = [r for r, keys in self.confirmed.items() if key_of(cid) in keys] or \
            list(self.roots)
        tried: set[str] = set()
        for root in roots:
            target = self.roots.get(root, "")
            holder = self.targets.get(target)
            if holder is None or target in tried:
                continue
            tried.add(target)
            try:
                if await _dial_any(self._dial, await self._holders(target, holder, root)):
                    return
            except PinningError as exc:
                log.info("cannot ask who holds a block", cid=str(cid), error=str(exc))


    async def _holders(self, target: str, holder: Holder, root: str) -> list[str]:
        """Who holds ``root``, asked at most once a minute per service (a file read back
        block by block would otherwise ask once per block)."""
        now = trio.current_time()
        cached = self._holder_cache.get((target, root))
        if cached is not None and cached[1] > now:
            return cached[0]
        addrs = await holder.holders(root)
        self._holder_cache[(target, root)] = (addrs, now + HOLDERS_TTL)
        return addrs


async def _dial_any(dial: Callable[[str], Awaitable[object]], addrs: Iterable[str]) -> bool:
    for addr in addrs:
        if "/p2p/" not in addr or "/p2p-circuit" in addr:
            continue
        try:
            with trio.move_on_after(5):
                await dial(addr)
                return True
        except Exception as exc:
            log.debug("holder not reachable", addr=addr, error=str(exc))
    return False
