"""Command line: the daemon (`ipfs-kit-node --role ROLE`) and client subcommands.

Client subcommands talk to the running daemon over the control API socket in the repo. To add
one: declare its arguments in ``parser.py``, write a function taking (args, client) in the
module of its area and register it with ``commands._client_command``.

Modules by job: ``parser`` (the grammar), ``daemon`` and ``settings`` (the daemon; the repo
folder and config), ``commands`` (the client commands' registry and runner), ``output``
(printing shared by commands), and the client commands by area: ``network``, ``blocks``,
``pins``, ``add``, ``files``, ``tasks``. Each is imported only by the command that needs it, so
a client command never loads the daemon's modules. Names with a leading underscore are shared
between these modules, not an API.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from ..errors import ConfigError, IpfsKitError
from .parser import _command_word, build_parser

TYPE_CHECKING = False  # importing typing costs a CLI command ~4 ms
if TYPE_CHECKING:
    from typing import NoReturn

__all__ = ["_command_word", "build_parser", "main", "run"]


def run() -> NoReturn:
    """The console script: ``main``, and after anything but the daemon the process ends at
    once. Tearing the interpreter down (every module's objects freed one by one) cost each
    client command ~6 ms of its ~42; such a command has closed its files (each in a
    ``with``) and its socket goes with the process, so only stdout and stderr are flushed
    here. The daemon ends as a process usually does."""
    code = main()
    if _command_word(sys.argv[1:]) in (None, "daemon"):
        sys.exit(code)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe: the usual exit says so as before
        sys.exit(code)
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(_command_word(words)).parse_args(words)
    try:
        if args.command in (None, "daemon"):
            from .daemon import run_daemon

            return run_daemon(args)
        if args.command == "config":
            from .settings import _config_show

            return _config_show(args)
        if args.command == "add" and args.only_hash:
            from .add import _add_only_hash

            return _add_only_hash(args)
        from .commands import run_client

        return run_client(args)
    except ConfigError as exc:
        print(f"Error: invalid configuration: {exc}", file=sys.stderr)
        return 2
    except IpfsKitError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 1))
    except OSError as exc:
        if isinstance(exc, BrokenPipeError) and _stdout_reader_left():
            from .output import _stdout_gone

            _stdout_gone()  # `pin ls | head`: quiet, as Kubo's CLI (SIGPIPE)
            return 0
        # a file we were told to read or write (or the daemon's socket): one line
        where = f": {exc.filename}" if exc.filename else ""
        print(f"Error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _stdout_reader_left() -> bool:
    """Whether stdout's reader has closed it (poll says POLLERR for a pipe, POLLHUP for a
    socket, as libuv's stdio pipes are), so a broken pipe is the reader leaving, not the
    daemon's socket breaking."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        gone = select.POLLERR | select.POLLHUP
        return any(mask & gone for _, mask in poller.poll(0))
    except (OSError, ValueError):
        return False
