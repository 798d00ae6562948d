"""The repo folder and the effective config as the command line sets them: shared by the
daemon, `config show` and (the repo only) every client command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .output import _print_json

TYPE_CHECKING = False  # importing typing costs a CLI command ~4 ms
if TYPE_CHECKING:
    from typing import Any

    from ..config import NodeConfig


def _repo_path(args: argparse.Namespace) -> Path:
    from ..repo import default_repo_path

    return Path(args.repo) if args.repo else default_repo_path()


def _effective_config(args: argparse.Namespace) -> NodeConfig:
    from ..config import Layer, load_config, parse_table

    flags: dict[str, Any] = {}
    if args.listen:
        flags["listen"] = args.listen
    if args.bootstrap:
        flags["bootstrap"] = args.bootstrap
    layer: Layer = parse_table("command line", {"node": flags}) if flags else {}
    return load_config(
        args.role or "worker",
        repo_config=_repo_path(args) / "config.toml",
        config_file=args.config,
        flags=layer,
    )


def _config_show(args: argparse.Namespace) -> int:
    config = _effective_config(args)
    if args.enc == "json":
        _print_json(config.to_dict())
    else:
        sys.stdout.write(config.to_toml())
    return 0
