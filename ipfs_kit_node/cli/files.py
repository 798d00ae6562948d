"""Client commands that read DAGs out of the node: cat, ls, get (a file or folder written under
a path, never outside it) and dag export/import (CAR archives)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from ..errors import IpfsKitError
from .commands import _client_command
from .output import _stdout_gone, _stream_to_stdout

TYPE_CHECKING = False  # importing typing costs a CLI command ~4 ms
if TYPE_CHECKING:
    from typing import Any

# Kubo's ls Type numbers (UnixFS Data types): folder, file, symlink.
_DIR, _FILE, _SYMLINK = 1, 2, 4
_GET_MAX_DEPTH = 4096  # as the daemon's DAG walks (exporter.MAX_DEPTH)


@_client_command("cat")
def _cat(args: argparse.Namespace, client: Any) -> int:
    return _stream_to_stdout(client, "cat", args.cid)


@_client_command("ls")
def _ls(args: argparse.Namespace, client: Any) -> int:
    """Printed as the daemon streams it: a huge folder shows at once, in flat memory."""
    try:
        for link in _ls_links(client, args.cid):
            name = link["Name"] + ("/" if link["Type"] == _DIR else "")
            if link["Type"] == _SYMLINK:  # its target as stored, even if not UTF-8
                name += f" -> {link.get('Target', '')}"
            line = f"{link['Hash']} {link['Size']} {name}\n"
            sys.stdout.buffer.write(line.encode("utf-8", "surrogateescape"))
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        _stdout_gone()
    return 0


@_client_command("dag")
def _dag(args: argparse.Namespace, client: Any) -> int:
    """export: the CAR to stdout as the daemon streams it; import: each file streamed up,
    Kubo's `Pinned root CID success` lines printed."""
    if args.dag_command == "export":
        return _stream_to_stdout(client, "dag/export", args.cid)
    for path in args.files:
        try:
            archive = open(path, "rb")  # noqa: SIM115 (closed below, read by the upload)
        except OSError as exc:
            raise IpfsKitError(f"cannot read {path}: {exc.strerror or exc}") from None

        def upload(archive: Any = archive) -> Iterator[bytes]:
            while chunk := archive.read(1 << 20):
                yield chunk

        with archive, client.stream("dag/import", {"pin-roots": args.pin_roots},
                                    body=upload()) as response:
            for line in response.iter_lines():
                root = json.loads(line).get("Root")
                if root is not None:
                    error = root.get("PinErrorMsg") or ""
                    print(f"Pinned root\t{root['Cid']['/']}\t"
                          f"{'success' if not error else 'failed: ' + error}")
    return 0


def _ls_links(client: Any, cid: str) -> Iterator[dict[str, Any]]:
    """A folder's entries from ``ls`` with ``stream=true`` (one JSON object a line)."""
    with client.stream("ls", {"arg": cid, "stream": "true"}) as response:
        for line in response.iter_lines():
            if line.strip():
                try:
                    links = json.loads(line)["Objects"][0]["Links"]
                except (ValueError, KeyError, IndexError, TypeError):
                    raise IpfsKitError(f"the daemon's listing of {cid} is malformed: "
                                       f"{line[:100]!r}") from None
                yield from links


@_client_command("get")
def _get(args: argparse.Namespace, client: Any) -> int:
    target = args.output or Path(args.cid)
    _fetch_into(client, args.cid, target)
    print(f"saved {args.cid} to {target}")
    return 0


def _fetch_into(client: Any, cid: str, target: Path) -> None:
    """Write a file, a symlink or a whole folder at ``target``, walking folders with a stack.

    Nothing is ever written outside ``target``: entry names must be plain names (not empty,
    ``.``, ``..``, nor holding ``/`` or NUL), a name may appear once per folder (else a
    symlink written first could redirect what follows), symlinks are written as links with
    their target as stored and never followed, and an existing path is reused only if it is a
    real folder. OS refusals (a name too long, a path too deep) are one-line errors.
    """
    stat = client.call("unixfs/stat", {"arg": cid})
    kinds = {"directory": _DIR, "symlink": _SYMLINK, "file": _FILE, "raw": _FILE}
    pending = [(cid, target, kinds.get(stat["Type"], -1), stat.get("Target", ""), 0,
                _entry_meta(stat))]
    stamped: list[tuple[Path, int | None, tuple[int, int] | None]] = []
    while pending:
        cid, path, kind, link_target, depth, meta = pending.pop()
        try:
            if meta is not None:  # folders last: writing their entries changes their mtime
                stamped.append((path, *meta))
            if kind == _DIR:
                if depth > _GET_MAX_DEPTH:
                    raise IpfsKitError(f"folder {cid} is over {_GET_MAX_DEPTH} levels deep "
                                       f"under {target}; refusing to go deeper")
                _make_dir(path)
                children = _folder_entries(client, cid, path, depth)
                pending.extend(reversed(children))
            elif kind == _SYMLINK:
                _write_symlink(path, link_target)
            elif kind == _FILE:
                _write_file(client, cid, path)
            else:
                raise IpfsKitError(f"{cid} at {_show(path)} is a UnixFS entry of a kind `get` "
                                   "cannot write")
        except (OSError, ValueError) as exc:
            if isinstance(exc, IpfsKitError):
                raise
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise IpfsKitError(f"cannot write {_show(path)} ({cid}): {reason}") from None
    for path, mode, mtime in reversed(stamped):
        _apply_meta(path, mode, mtime)


def _entry_meta(entry: dict[str, Any]) -> tuple[int | None, tuple[int, int] | None] | None:
    """The UnixFS 1.5 mode and mtime stored on an entry, as `ls` and `unixfs/stat` give them."""
    try:
        mode = int(entry["Mode"], 8) if "Mode" in entry else None
        mtime = (int(entry["Mtime"]), int(entry.get("MtimeNsecs", 0))) \
            if "Mtime" in entry else None
    except (TypeError, ValueError):
        raise IpfsKitError(f"the daemon's mode/mtime for {entry.get('Hash', 'an entry')} is "
                           "malformed") from None
    if mode is None and mtime is None:
        return None
    return mode, mtime


def _apply_meta(path: Path, mode: int | None, mtime: tuple[int, int] | None) -> None:
    """Restore what ``add --preserve-mode/--preserve-mtime`` stored (a symlink: its own mtime,
    never its target's; its mode is not settable on Linux)."""
    import os

    link = path.is_symlink()
    try:
        if mode is not None and not link:
            os.chmod(path, mode & 0o7777)
        if mtime is not None:
            ns = mtime[0] * 10**9 + mtime[1]
            os.utime(path, ns=(ns, ns), follow_symlinks=not link)
    except OSError as exc:
        raise IpfsKitError(f"cannot set mode/mtime of {_show(path)}: {exc.strerror}") from None


def _folder_entries(client: Any, cid: str, path: Path, depth: int
                    ) -> list[tuple[str, Path, int, str, int,
                                    tuple[int | None, tuple[int, int] | None] | None]]:
    seen: set[str] = set()
    children = []
    for link in _ls_links(client, cid):
        name = link["Name"]
        if not name or name in (".", "..") or "/" in name or "\0" in name:
            raise IpfsKitError(f"refusing unsafe entry name {name!r} in folder {cid}; "
                               "nothing of it was written")
        if name in seen:
            raise IpfsKitError(f"entry name {name!r} appears twice in folder {cid} "
                               "(a file and a folder?); nothing of it was written")
        seen.add(name)
        children.append((link["Hash"], path / name, link["Type"], link.get("Target", ""),
                         depth + 1, _entry_meta(link)))
    return children


def _make_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True)
    except FileExistsError:
        if path.is_symlink() or not path.is_dir():
            raise IpfsKitError(f"cannot write folder {_show(path)}: something else is "
                               "there (a file or a symlink)") from None


def _write_symlink(path: Path, link_target: str) -> None:
    import os

    if path.is_symlink() and os.readlink(path) == link_target:
        return  # written by an earlier get
    os.symlink(link_target, path)


def _write_file(client: Any, cid: str, path: Path) -> None:
    """Into a fresh temporary file beside ``path``, renamed over it once complete (a rename
    replaces a symlink there; it never writes through one). Its mode is 0666 less the umask,
    as Kubo's `ipfs get` (mkstemp's 0600 would stay after the rename)."""
    import contextlib
    import os
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".ikn-get-", suffix=".part")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as out, client.stream("cat", {"arg": cid}) as response:
            response.copy_to(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    """The process's umask (read by setting it: the CLI runs no other threads)."""
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _show(path: Path, limit: int = 160) -> str:
    """A path for an error message: a 5,000-level one is shortened in the middle."""
    text = str(path)
    return text if len(text) <= limit else f"{text[:60]}...{text[-(limit - 63):]}"
