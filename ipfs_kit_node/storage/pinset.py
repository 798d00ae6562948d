"""The pin set of ``TieredStore``: pin, unpin, update, verify and the pin queries, over one
walk of a pinned DAG (``walk_dag``).

Pins live in the block index (blockdb.py) beside the reference counts of the blocks they cover:
a recursive pin counts once on every block of its DAG, a direct pin on its root, and both move
in one transaction. Every walk of a pinned DAG here (the keys a pin counts, what a DAG lacks,
``pin verify``, which pin holds a block) is ``walk_dag``: each block once by multihash, its
index row looked up, the caller deciding what to read and which children to follow. Identity
CIDs (``add --inline``) are present by definition and never stored: the walk goes through
them (their bytes are in the CID), and a pin counts them in the index's ``lost`` table (as it
counts blocks whose bytes were lost), so ``pin ls`` lists them as Kubo does.

Links are followed through dag-pb, DAG-CBOR and DAG-JSON blocks, as Kubo's pins follow them.
Pins made before DAG-CBOR links were followed say so (``Pin.walk`` 0): they are uncounted
through dag-pb links only, exactly what they counted, so no other pin's count is taken.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass

import trio
from multiformats import CID

from ..cid import cid_from_bytes
from ..codecs.cborlinks import DAG_CBOR, DAG_JSON
from ..dagwalk import child_links
from ..errors import BlockNotFoundError, CodecError, StoreBusyError, StoreError
from ..logs import get_logger
from ..unixfs import pbscan
from .blockdb import WALK, BlockMeta, MissingBlocks, Pin, PinMode
from .blocks import CidLike, cid_of_key, key_of, to_cid
from .core import DAG_PB, _text
from .reads import ReadPath, inline_bytes

log = get_logger(__name__)

PACE = 256  # steps between two checkpoints of a walk that read nothing


@dataclass(slots=True)
class Step:
    """One block reached by ``walk_dag``. The caller sets ``children`` (the CIDs to walk on
    below it, none by default) before the walk goes on."""

    cid: CID
    key: bytes
    inline: bytes | None  # an identity CID's block: present, never stored
    meta: BlockMeta | None  # its index row (None: not held here, or inline)
    children: Sequence[CID] = ()


async def walk_dag(lookup: Callable[[bytes], BlockMeta | None], root: CID, *,
                   seen: set[bytes] | None = None) -> AsyncGenerator[Step, None]:
    """Every block reachable from ``root`` through the children the caller gives each step,
    each once (by multihash; ``seen`` may be shared by several walks), depth-first."""
    seen = set() if seen is None else seen
    stack = [root]
    steps = 0
    while stack:
        cid = stack.pop()
        key = key_of(cid)
        if key in seen:
            continue
        seen.add(key)
        inline = inline_bytes(cid)
        step = Step(cid, key, inline, None if inline is not None else lookup(key))
        yield step
        stack.extend(step.children)
        steps += 1
        if steps % PACE == 0:
            await trio.lowlevel.checkpoint()


#: Codecs whose blocks link to others (a pin's walk reads these; the rest are leaves).
LINKED = frozenset((DAG_PB, DAG_CBOR, DAG_JSON))


def links(cid: CID, data: bytes) -> list[CID]:
    """The CIDs a block links to: dag-pb, DAG-CBOR and DAG-JSON (as Kubo's pins follow
    them); none for other codecs. StoreError if the block cannot be decoded."""
    if cid.codec.code in (DAG_CBOR, DAG_JSON):
        try:
            return [cid_from_bytes(raw) for raw in child_links(cid, data)]
        except CodecError as exc:
            raise StoreError(str(exc)) from exc
    return pb_links(cid, data)


def pb_links(cid: CID, data: bytes) -> list[CID]:
    """The CIDs a dag-pb block links to (none for other codecs). Read with the lazy
    scanner and the fast CID parser, bytes in: a pin's walk of a 64 MiB file spent twice
    the upload's time building and printing CIDs through multiformats."""
    if cid.codec.code != DAG_PB:
        return []
    try:
        # Split over a view: a leaf's Data (256 KiB) is then not copied just to be dropped
        # (the copy was most of a 64 MiB add's pin walk).
        layout, _, _ = pbscan.split(memoryview(data), cid)
        assert layout is not None  # read to the end: no max_links
        out, pos = [], 0
        while pos < layout.links_end:
            link, pos = pbscan.read_link(data, pos, cid)
            out.append(cid_from_bytes(link.cid))
        return out
    except CodecError as exc:
        raise StoreError(str(exc)) from exc


class PinSet(ReadPath):
    """Pins and the pin queries of ``TieredStore``."""

    links = staticmethod(links)

    def pins(self) -> dict[str, PinMode]:
        """Every pin root and its mode (for a long listing, page with ``iter_pins``)."""
        out: dict[str, PinMode] = {}
        after = ""
        while page := self._db.pin_page(after, limit=10_000):
            out.update((p.cid, p.mode) for p in page)
            after = page[-1].cid
        return out

    async def iter_pins(self) -> AsyncIterator[Pin]:
        """Pin roots in CID order, a page at a time."""
        after = ""
        while page := self._db.pin_page(after):
            for pin in page:
                yield pin
            after = page[-1].cid
            await trio.lowlevel.checkpoint()

    async def iter_indirect(self) -> AsyncIterator[str]:
        """Blocks pinned only through a recursive pin's DAG (not roots themselves), then
        those whose bytes were lost (found corrupt or gone): their pins still cover them."""
        after = b""
        while page := self._db.page(after, pinned=True):
            for key, meta in page:
                if not self._db.is_root(key):
                    yield meta.cid
            after = page[-1][0]
            await trio.lowlevel.checkpoint()
        after = b""
        while lost := self._db.lost_page(after):
            for key, text in lost:
                if not self._db.is_root(key):
                    yield text
            after = lost[-1][0]
            await trio.lowlevel.checkpoint()

    def pin_of(self, cid: CidLike) -> Pin | None:
        return self._db.pin(_text(to_cid(cid)))

    def pin_type(self, cid: CidLike) -> str | None:
        """recursive, direct, indirect (covered by a recursive pin), or None."""
        cid = to_cid(cid)
        pin = self._db.pin(_text(cid))
        if pin is not None:
            return pin.mode
        return "indirect" if self._db.pins_of(key_of(cid)) else None

    async def pin_status(self, cid: CidLike, kind: str = "all") -> tuple[str, str] | None:
        """Kubo's answer to ``pin ls CID --type KIND``: (type, name), or None if not pinned
        so. A recursive root is only ``recursive``; a block inside a recursive pin's DAG is
        ``indirect through ROOT`` (a direct pin too, asked with ``indirect``), the root found
        by walking the recursive pins' DAGs as boxo does (``indirect`` alone if the walk
        cannot reach it: a block it passes through is missing). Identity CIDs are never
        counted: only the walk finds them."""
        cid = to_cid(cid)
        key = key_of(cid)
        pin = self._db.pin(_text(cid))
        if kind in ("recursive", "direct"):
            return (pin.mode, pin.name) if pin is not None and pin.mode == kind else None
        if pin is not None and (kind == "all" or pin.mode == "recursive"):
            return (pin.mode, pin.name) if kind == "all" else None
        counted = self._db.pins_of(key) - self._db.pins_on(key)  # from DAGs above it
        if counted <= 0 and inline_bytes(cid) is None:
            return None
        via = await self._pinned_via(key)
        if via is not None:
            return f"indirect through {via}", ""
        return ("indirect", "") if counted > 0 else None

    async def _pinned_via(self, key: bytes) -> str | None:
        """The first recursive pin (in CID order) whose DAG holds ``key`` below its root; the
        walks share one seen set, so each block held is read at most once."""
        seen: set[bytes] = set()
        async for pin in self.iter_pins():
            if pin.mode != "recursive":
                continue
            root = to_cid(pin.cid)
            async with aclosing(walk_dag(self._db.get, root, seen=seen)) as steps:
                async for step in steps:
                    if step.key == key and step.cid is not root:
                        return pin.cid
                    step.children = await self._children(step)
        return None

    async def _children(self, step: Step) -> list[CID]:
        """The links of a block reached by a walk that goes on past what is missing or bad
        (their children are out of its reach)."""
        if step.inline is not None:
            return links(step.cid, step.inline)
        if step.meta is None or step.cid.codec.code not in LINKED:
            return []
        try:
            return links(step.cid, await self._read(step.cid, step.key, step.meta))
        except (BlockNotFoundError, StoreError):
            return []

    def is_pinned(self, cid: CidLike) -> bool:
        return self._db.pins_of(key_of(to_cid(cid))) > 0

    async def dag_keys(self, root: CidLike) -> list[bytes]:
        """Store keys of a whole DAG held here (locally or remotely); BlockNotFoundError if a
        block is missing. The remote tier uses it to know which blocks a remote pin covers."""
        self._check_open()
        return await self._dag_keys(to_cid(root), True)

    async def dag_missing(self, root: CidLike, recursive: bool = True) -> AsyncIterator[CID]:
        """Blocks of the DAG not held here, as far as the blocks held let us see."""
        async for step in walk_dag(self._db.get, to_cid(root)):
            if step.inline is not None:  # present by definition
                if recursive:
                    step.children = links(step.cid, step.inline)
            elif step.meta is None:
                yield step.cid
            elif recursive and step.cid.codec.code in LINKED:
                step.children = links(step.cid, await self._read(step.cid, step.key, step.meta))

    async def _dag_keys(self, root: CID, recursive: bool, *, tolerant: bool = False,
                        links_of: Mapping[bytes, Sequence[CID]] | None = None,
                        walk: int = WALK, inline: dict[bytes, bytes] | None = None
                        ) -> list[bytes]:
        """Keys of the root and (recursively) every block it links to; all must be here
        (``tolerant``: those that are, and those whose bytes were lost, still counted).
        ``links_of``: the children of dag-pb blocks whose bytes the caller verified against
        their keys (an upload's), so those are not read back; every block must still be in
        the index. Identity CIDs are present (never stored): their links are followed, and
        with ``inline`` they are counted too (their keys listed, and their binary CIDs put in
        it). ``walk``: which links (see blockdb.WALK)."""
        follow, linked = (links, LINKED) if walk else (pb_links, frozenset((DAG_PB,)))
        keys: list[bytes] = []
        async for step in walk_dag(self._db.get, root):
            cid, key, meta = step.cid, step.key, step.meta
            if step.inline is not None:
                if inline is not None:
                    inline[key] = bytes(cid)
                    keys.append(key)
                if recursive:
                    step.children = follow(cid, step.inline)
                continue
            if meta is None:
                if tolerant:
                    if self._db.pins_of(key):  # lost: its count goes with the pin
                        keys.append(key)
                        if recursive and cid.codec.code in linked:
                            log.warning("a lost block hides part of a pin's DAG: the blocks "
                                        "under it stay counted", cid=str(cid), pin=str(root))
                    continue
                raise BlockNotFoundError(
                    str(cid), f"in the DAG of {root}; fetch the whole DAG before pinning it"
                ) if cid != root else BlockNotFoundError(str(cid))
            keys.append(key)
            if recursive and cid.codec.code in linked:
                children = links_of.get(key) if links_of else None
                if children is None:
                    try:
                        data = await self._read(cid, key, meta)
                    except BlockNotFoundError:
                        if tolerant:
                            continue
                        raise
                    children = follow(cid, data)
                step.children = children
        return keys

    async def _old_keys(self, cid: CID, current: Pin | None) -> list[bytes]:
        if current is None:
            return []
        # Identity CIDs are counted by pins that walk every codec's links (walk 1).
        return await self._dag_keys(cid, current.mode == "recursive", tolerant=True,
                                    walk=current.walk, inline={} if current.walk else None)

    async def pin(self, cid: CidLike, recursive: bool = True, *, name: str = "",
                  links: Mapping[bytes, Sequence[CID]] | None = None) -> None:
        """Pin a block (direct) or a whole DAG (recursive); every block must be here.
        Recorded (with its blocks' counts, in one transaction) before returning. ``links``
        as for ``_dag_keys`` (an upload's verified nodes: the walk reads none back)."""
        self._check_open()
        cid = to_cid(cid)
        mode: PinMode = "recursive" if recursive else "direct"
        inline: dict[bytes, bytes] = {}
        keys = await self._dag_keys(cid, recursive, links_of=links, inline=inline)
        async with self._pin_lock:
            current = self._db.pin(_text(cid))
            if current is not None and (current.mode == mode or current.mode == "recursive"):
                # Pinned again under a name: renamed, as boxo re-pins. Without one the name
                # stays (boxo clears it: an add of the same file would lose it).
                if current.mode == mode and name and current.name != name:
                    await self._write(self._db.rename_pin, current.cid, name)
                return
            old = await self._old_keys(cid, current)
            try:
                await self._write(self._db.add_pin, Pin(_text(cid), mode, name), key_of(cid),
                                  keys, old, inline)
            except MissingBlocks as exc:
                raise BlockNotFoundError(
                    str(cid_of_key(exc.keys[0])), f"in the DAG of {cid}: collected while "
                    "pinning; add it again") from None
        for listener in self._pin_listeners:
            listener(cid, True)

    async def unpin(self, cid: CidLike, *, recursive: bool = True) -> None:
        """Remove a pin; ``recursive=False`` refuses a recursive one (Kubo's ``pin rm
        --recursive=false``). A block only covered by another pin's DAG is not a pin."""
        self._check_open()
        cid = to_cid(cid)
        async with self._pin_lock:
            current = self._db.pin(_text(cid))
            if current is None:
                raise StoreError(f"{cid}: not pinned or pinned indirectly")
            if current.mode == "recursive" and not recursive:
                raise StoreError(f"{cid} is pinned recursively")
            keys = await self._old_keys(cid, current)
            await self._write(self._db.remove_pin, _text(cid), keys)
        for listener in self._pin_listeners:
            listener(cid, False)

    async def update_pin(self, old: CidLike, new: CidLike, *, unpin: bool = True) -> None:
        """Move a recursive pin from OLD to NEW (whose blocks must all be here) atomically:
        never a moment with neither pinned. ``unpin=False`` keeps OLD. As Kubo (boxo's
        ``Update``): OLD the same as NEW changes nothing; NEW pinned recursively already is
        an error (it replaced that pin, which kept its name and its counts' walk)."""
        self._check_open()
        old, new = to_cid(old), to_cid(new)
        if not self.update_needed(old, new):
            return
        inline: dict[bytes, bytes] = {}
        keys = await self._dag_keys(new, True, inline=inline)
        async with self._pin_lock:
            self.update_needed(old, new)  # again: a pin may have moved meanwhile
            current = self._db.pin(_text(old))
            existing = self._db.pin(_text(new))
            assert current is not None
            old_keys = await self._old_keys(old, current) if unpin else []
            replaced: list[bytes] = []
            if existing is not None:
                # Its direct count gives way to the recursive one, whether OLD stays or not.
                replaced = [key_of(new)]
            try:
                await self._write(self._db.update_pin, current,
                                  Pin(_text(new), "recursive", current.name), key_of(new),
                                  keys, old_keys, unpin, replaced, inline)
            except MissingBlocks as exc:
                raise BlockNotFoundError(
                    str(cid_of_key(exc.keys[0])), f"in the DAG of {new}: collected while "
                    "pinning; try again") from None
        for listener in self._pin_listeners:
            listener(new, True)
            if unpin:
                listener(old, False)

    def update_needed(self, old: CidLike, new: CidLike) -> bool:
        """boxo's ``Update`` checks, made before NEW is fetched: False if OLD is NEW (nothing
        to do, pinned or not), StoreError if OLD is no recursive pin or NEW is one."""
        old, new = to_cid(old), to_cid(new)
        if old == new:
            return False
        current = self._db.pin(_text(old))
        if current is None or current.mode != "recursive":
            raise StoreError("'from' cid was not recursively pinned already")
        existing = self._db.pin(_text(new))
        if existing is not None and existing.mode == "recursive":
            raise StoreError("'to' cid was already recursively pinned")
        return True

    async def verify_pin(self, cid: CidLike) -> list[tuple[str, str]]:
        """Every block of a pin present and re-hashed: (cid, problem) of each bad one."""
        root = to_cid(cid)
        pin = self._db.pin(_text(root))
        if pin is None:
            raise StoreError(f"{root} is not pinned")
        recursive = pin.mode == "recursive"
        bad: list[tuple[str, str]] = []
        async for step in walk_dag(self._db.get, root):
            cid, key, meta = step.cid, step.key, step.meta
            data = step.inline  # an identity block's bytes are its CID: sound
            if data is None:
                if meta is None:
                    bad.append((str(cid), "missing"))
                    continue
                if meta.remote:  # held by the remote tier: not re-hashed here
                    if recursive and cid.codec.code in LINKED:
                        step.children = links(cid, await self._read(cid, key, meta))
                    continue
                try:
                    data, corrupt, now = await self._read_disk(key, meta)
                except StoreBusyError as exc:
                    bad.append((str(cid), str(exc)))  # not dropped: it is there
                    continue
                if data is None:
                    bad.append((str(cid), "corrupt (quarantined)" if corrupt else "missing"))
                    if now is not None and not now.remote:
                        await self._drop([key])
                    continue
            if recursive:
                try:
                    step.children = links(cid, data)
                except StoreError as exc:
                    bad.append((str(cid), str(exc)))
        return bad


__all__ = ["LINKED", "PinSet", "Step", "links", "pb_links", "walk_dag"]
