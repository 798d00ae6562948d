"""Each client command is registered by the module `run_client` imports for it (the
`_MODULES` table of cli/commands.py): a command left out of the table, or registered in
another module, would otherwise fail only when someone runs it."""

from __future__ import annotations

import argparse
from importlib import import_module

from ipfs_kit_node.cli import build_parser
from ipfs_kit_node.cli.commands import _CLIENT_COMMANDS, _MODULES

NOT_CLIENT = {"daemon", "config"}  # run by main() itself, without a daemon's socket


def test_every_client_command_is_registered_by_the_module_named_for_it() -> None:
    subparsers = next(action for action in build_parser()._actions
                      if isinstance(action, argparse._SubParsersAction))
    assert set(_MODULES) == set(subparsers.choices) - NOT_CLIENT
    for module in set(_MODULES.values()):
        import_module(f"ipfs_kit_node.cli.{module}")
    for command, module in _MODULES.items():
        assert _CLIENT_COMMANDS[command].__module__ == f"ipfs_kit_node.cli.{module}", command
    assert set(_CLIENT_COMMANDS) == set(_MODULES)
