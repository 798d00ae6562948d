"""The client commands' registry and runner: each command module registers its functions with
``_client_command`` and is named in ``_MODULES``; ``run_client`` imports the named command's
module, opens the Client on the repo and calls it."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from importlib import import_module

from .settings import _repo_path

TYPE_CHECKING = False  # importing typing costs a CLI command ~4 ms
if TYPE_CHECKING:
    from typing import Any

if TYPE_CHECKING:
    ClientFn = Callable[[argparse.Namespace, Any], int]
_CLIENT_COMMANDS: dict[str, ClientFn] = {}
#: The module holding each client command: only that one is imported (~0.15 ms a module).
_MODULES = {
    "id": "network", "status": "network", "swarm": "network", "bitswap": "network",
    "dht": "network", "pubsub": "network", "repo": "blocks", "block": "blocks", "pin": "pins",
    "add": "add", "cat": "files", "ls": "files", "get": "files", "dag": "files",
    "task": "tasks", "workers": "tasks", "cluster": "tasks",
}


def _client_command(name: str) -> Callable[[ClientFn], ClientFn]:
    def register(fn: ClientFn) -> ClientFn:
        _CLIENT_COMMANDS[name] = fn
        return fn

    return register


def run_client(args: argparse.Namespace) -> int:
    """A client command through the public Client (the same one Python users get), on the
    repo's unix socket."""
    from ..client import Client

    import_module(f"{__package__}.{_MODULES[args.command]}")  # it registers the command
    repo = _repo_path(args)
    # cat/get may wait for peers (Bitswap gives up after 60 s): give them longer than that.
    timeout = 90.0 if args.command in ("cat", "get", "ls", "dht", "dag") else 30.0
    if args.command == "pin" and args.pin_command in ("add", "update"):
        # Streamed like cat/get (a progress line every 0.5 s while it fetches); one block may
        # take up to --timeout before the daemon gives up on it.
        timeout = max(90.0, args.timeout + 30.0)
    elif args.command in ("pin", "repo"):
        timeout = 3600.0  # verify, rm and gc walk the whole store or pin set: minutes at 10^6
    if args.command == "task":
        waits = args.task_command == "wait" or getattr(args, "wait", False) is True
        timeout = 24 * 3600.0 if waits else 120.0
    if args.command == "pubsub" and args.pubsub_command == "sub":
        timeout = 24 * 3600.0  # a subscription waits for messages as long as it runs
    with Client(repo=repo, config_file=args.config, timeout=timeout) as client:
        return _CLIENT_COMMANDS[args.command](args, client)
