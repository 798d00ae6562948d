"""Kubo's path arguments: ``CID``, ``CID/a/b``, ``/ipfs/CID/a/b``."""

from __future__ import annotations

from multiformats import CID

from ...cid import to_cid
from ...dagwalk import Resolved, resolve_path
from ...errors import ApiError
from ...unixfs.exporter import BlockGetter

MAX_PATH = 4096


def split_path(text: str) -> tuple[CID, list[str]]:
    """The root CID and the names after it; a malformed one is a 400."""
    if len(text) > MAX_PATH:
        raise ApiError(f"path over {MAX_PATH} characters", 400)
    rest = text
    if rest.startswith("/ipns/"):
        raise ApiError("IPNS names are not supported here; give an /ipfs/ path", 400)
    if rest.startswith("/ipfs/"):
        rest = rest[len("/ipfs/"):]
    root, *names = rest.split("/")
    return to_cid(root), [n for n in names if n]


async def resolve_arg(blocks: BlockGetter, text: str) -> Resolved:
    cid, names = split_path(text)
    return await resolve_path(blocks, cid, names)
