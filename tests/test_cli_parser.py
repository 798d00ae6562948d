"""The CLI builds only the named command's parser (building all ~60 cost 10-15 ms of a client
command's 100 ms budget); what it parses must be what the whole parser parses."""

from __future__ import annotations

import pytest

from ipfs_kit_node.cli import _command_word, build_parser

COMMAND_LINES = [
    [], ["id"], ["--repo", "/r", "id"], ["--repo=/r", "pin", "ls", "-q"],
    ["pin", "add", "QmX", "--name", "n", "--recursive", "false"],
    ["add", "-Q", "--repo", "/r", "f"],
    ["add", "--raw-leaves=false", "--cid-version", "1", "a", "b"], ["cat", "QmX"],
    ["get", "QmX", "-o", "out"], ["task", "submit", "sha256", "--count", "3", "--wait"],
    ["config", "show", "--role", "master", "--enc", "json"], ["--role", "master"],
    ["daemon", "--role", "leecher", "--listen", "/ip4/127.0.0.1/tcp/0"], ["repo", "gc", "--full"],
    ["--listen", "/ip4/1.2.3.4/tcp/1", "--bootstrap", "/ip4/5.6.7.8/tcp/2", "status"],
    ["--config", "c.toml", "dag", "export", "QmX"], ["pin", "remote", "ls", "--all"],
]


@pytest.mark.parametrize("argv", COMMAND_LINES, ids=" ".join)
def test_one_command_parser_parses_as_the_whole(argv: list[str]) -> None:
    whole = vars(build_parser().parse_args(argv))
    assert vars(build_parser(_command_word(argv)).parse_args(argv)) == whole


def test_what_is_not_a_plain_command_word_builds_everything() -> None:
    assert _command_word(["--rep", "/r", "id"]) is None  # an abbreviation: argparse decides
    assert _command_word(["-h"]) is None
    assert _command_word(["--repo", "/r", "--role", "worker", "pin", "ls"]) == "pin"
    # An unknown command still gets argparse's error naming every command.
    with pytest.raises(SystemExit):
        build_parser("frob").parse_args(["frob"])
    assert "cluster" in build_parser("frob").format_help()
