"""The add command: files are imported (UnixFS) here in the client and their blocks streamed to
the daemon, each line printed once the daemon has stored what it names; `add -n` only hashes
and needs no daemon."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import ConfigError, IpfsKitError
from .commands import _client_command

TYPE_CHECKING = False  # importing typing costs a CLI command ~4 ms
if TYPE_CHECKING:
    from typing import Any


def _kubo_options(args: argparse.Namespace) -> dict[str, Any]:
    """The command's DAG options, as ``ImportParams.kubo`` (and the daemon's add) take them."""
    return {"profile": args.profile, "cid_version": args.cid_version,
            "raw_leaves": args.raw_leaves, "chunker": args.chunker, "hash": args.hash,
            "trickle": args.trickle or None, "max_links": args.max_links,
            "inline": args.inline, "inline_limit": args.inline_limit,
            "preserve_mode": args.preserve_mode, "preserve_mtime": args.preserve_mtime,
            "mode": args.mode, "mtime": args.mtime, "mtime_nsecs": args.mtime_nsecs}


def _import_params(args: argparse.Namespace) -> Any:
    from ..unixfs.params import ImportParams

    try:
        return ImportParams.kubo(**_kubo_options(args), hidden=args.hidden,
                                 wrap_with_directory=args.wrap_with_directory)
    except ValueError as exc:
        raise ConfigError("add options", "add", str(exc)) from None


def _add_items(args: argparse.Namespace) -> Iterator[Any]:
    from ..unixfs.importer import import_named_stream, import_paths

    params = _import_params(args)
    if not args.paths:  # as Kubo: no path reads stdin
        yield from import_named_stream(sys.stdin.buffer, args.stdin_name, params)
        return
    for path in args.paths:
        if not path.exists() and not path.is_symlink():
            raise IpfsKitError(f"{path}: no such file or folder")
        if path.is_dir() and not path.is_symlink() and not args.recursive:
            raise IpfsKitError(f"{path} is a folder; add it with -r")
    yield from import_paths(args.paths, params)


def _cid_out(raw: bytes, args: argparse.Namespace) -> str:
    """A CID as ``add`` prints it: v0 in base58btc, v1 in base32; with ``--cid-base`` v0 is
    upgraded to v1 (as Kubo, unless ``--upgrade-cidv0-in-output=false``) and v1 in that base."""
    from ..cidtext import cid_text

    if not args.cid_base:
        return cid_text(raw)
    v0 = len(raw) == 34 and raw[0] == 0x12
    if v0 and args.upgrade_cidv0_in_output is False:
        return cid_text(raw)
    from ..cid import cid_from_bytes

    cid = cid_from_bytes(b"\x01\x70" + raw if v0 else raw)
    try:
        return str(cid.encode(args.cid_base))
    except (KeyError, ValueError) as exc:
        raise IpfsKitError(f"--cid-base {args.cid_base!r}: {exc}") from None


def _report(item: Any, args: argparse.Namespace, roots: list[str], progress: _Progress,
            lines: list[str] | None = None) -> None:
    """Progress as blocks go by; an entry's line printed now, or kept in ``lines`` to be
    printed once the daemon has acknowledged its blocks (a line is a promise they are stored)."""
    from ..unixfs.importer import Added
    from ..unixfs.params import Block

    if isinstance(item, Block):
        progress.advance(len(item.data))
    elif isinstance(item, Added):
        cid = _cid_out(item.entry.cid_bytes, args)
        if "/" not in item.name:
            roots.append(cid)
        if args.quieter or args.silent:
            return
        if args.quiet:
            line = cid
        else:  # stdin without --stdin-name is named by its CID, as Kubo does
            name = item.name if item.name or item.is_dir else cid
            line = f"added {cid} {name}"
        if lines is not None:
            lines.append(line)
            return
        progress.clear()
        print(line, flush=True)


class _Progress:
    """A one-line progress bar on stderr, only on a TTY and for large inputs."""

    def __init__(self, paths: list[Path], wanted: bool | None = None) -> None:
        self.total = sum(_tree_size(p) for p in paths) if wanted is not False else 0
        if wanted is None:
            self.enabled = sys.stderr.isatty() and self.total >= 8 * 2**20
        else:
            self.enabled = wanted and self.total > 0
        self.done = 0
        self._shown = 0.0
        self._started = time.monotonic()

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and now - self._shown > 0.2:
            self._shown = now
            rate = self.done / max(now - self._started, 1e-6) / 1e6
            pct = min(100.0, 100 * self.done / self.total)
            bar = "#" * int(pct / 4)
            sys.stderr.write(f"\r[{bar:<25}] {pct:5.1f}% {self.done / 2**20:,.0f} MiB "
                             f"{rate:,.0f} MB/s")
            sys.stderr.flush()

    def clear(self) -> None:
        if self.enabled:
            sys.stderr.write("\r" + " " * 70 + "\r")
            sys.stderr.flush()


def _tree_size(path: Path) -> int:
    if path.is_symlink():
        return 0
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def _add_only_hash(args: argparse.Namespace) -> int:
    roots: list[str] = []
    progress = _Progress(args.paths, args.progress)
    for item in _add_items(args):
        _report(item, args, roots, progress)
    progress.clear()
    if args.quieter and not args.silent and roots:
        print(roots[-1])
    return 0


def _passable(args: argparse.Namespace, client: Any) -> bool:
    """One path the client can pass open (``client._sync.passable``), and CIDs printed as
    the daemon prints them (no --cid-base)."""
    from ..client._sync import passable

    return (len(args.paths) == 1 and args.cid_base is None
            and passable(client, args.paths[0], {"profile": args.profile,
                                                 "max_links": args.max_links},
                         args.wrap_with_directory))


def _add_passed(args: argparse.Namespace, client: Any) -> bool:
    """Add one file by passing it open to the daemon, which reads, chunks, hashes and stores
    it (no upload, one hash). False when the daemon cannot take it (an older one): then it
    is uploaded."""
    from ..client._sync import add_passed

    progress = _Progress(args.paths, args.progress)
    # The daemon checks the options (as the importer would here): importing the importer
    # cost this command ~25 ms of a ~100 ms small add.
    lines = add_passed(client, args.paths[0], _kubo_options(args), pin=args.pin == "true",
                       progress=lambda done: progress.advance(done - progress.done))
    if lines is None:
        return False
    progress.clear()
    for line in lines:
        if not (args.silent or args.quieter):
            print(line["Hash"] if args.quiet else f"added {line['Hash']} {line['Name']}")
    if args.quieter and not args.silent and lines:
        print(lines[-1]["Hash"])
    sys.stdout.flush()
    return True


@_client_command("add")
def _add(args: argparse.Namespace, client: Any) -> int:
    if _passable(args, client) and _add_passed(args, client):
        return 0
    from ..codecs.putmany import encode_frame, encode_frame_head
    from ..unixfs.params import Block

    roots: list[str] = []
    progress = _Progress(args.paths, args.progress)

    def upload() -> Iterator[bytes]:
        """Small blocks gathered into ~1 MiB chunks; a big block's bytes go out as they are
        (not copied into a chunk: the upload's copies cost more CPU than its hashing)."""
        batch = bytearray()
        for item in _add_items(args):
            if isinstance(item, Block):
                if len(item.data) >= 1 << 16:
                    batch += encode_frame_head(item.cid_bytes, len(item.data))
                    yield bytes(batch)
                    batch.clear()
                    yield item.data
                else:
                    batch += encode_frame(item.cid_bytes, item.data)
                    if len(batch) >= 1 << 20:
                        yield bytes(batch)
                        batch.clear()
            _report(item, args, roots, progress, lines)
        if batch:
            yield bytes(batch)

    lines: list[str] = []  # printed once the daemon has stored (and pinned) what they name
    one_root = args.wrap_with_directory or len(args.paths) <= 1
    query = {"pin-last": "true"} if args.pin == "true" and one_root else {}
    client.call("block/put-many", query, body=upload())
    if args.pin == "true" and not one_root and roots:
        client.call("pin/add", {"arg": roots})
    progress.clear()
    for line in lines:
        print(line)
    sys.stdout.flush()
    if args.quieter and not args.silent and roots:
        print(roots[-1])
    return 0
