"""The command line's grammar: the whole parser, or the top level with only the named command's
subparser (a client command has ~100 ms to start; building all ~60 subparsers took 10-15)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

from .. import __version__
from .._roles import ROLES

TYPE_CHECKING = False  # importing typing costs a CLI command ~4 ms
if TYPE_CHECKING:
    from typing import Any

PROFILE_NAMES = ("unixfs-v0-2015", "unixfs-v1-2025")


def _repo_options(parser: argparse.ArgumentParser, top: bool) -> None:
    # Subcommands accept the same options after their name; SUPPRESS keeps the top-level value.
    default = None if top else argparse.SUPPRESS
    parser.add_argument("--repo", type=Path, default=default,
                        help="repo folder (default: $IPFS_KIT_PATH or ~/.ipfs-kit-node)")
    parser.add_argument("--config", type=Path, default=default, help="extra TOML config file")


def _daemon_options(parser: argparse.ArgumentParser, top: bool) -> None:
    default = None if top else argparse.SUPPRESS
    parser.add_argument("--role", choices=ROLES, default=default,
                        help="node role (default: worker)")
    parser.add_argument("--listen", action="append", metavar="MULTIADDR", default=default,
                        help="listen address (repeatable; replaces [node] listen)")
    parser.add_argument("--bootstrap", action="append", metavar="MULTIADDR", default=default,
                        help="bootstrap peer (repeatable; replaces [node] bootstrap)")


def _flag(parser: argparse.ArgumentParser, name: str, help: str, short: str = "") -> None:
    """A Kubo boolean option: ``--x`` or ``--x=true`` sets it, ``--x=false`` clears it; it
    never takes the next word as its value (``--raw-leaves FILE`` adds FILE)."""
    dest = name.lstrip("-").replace("-", "_")
    names = [short] if short else []
    parser.add_argument(*names, name, f"{name}=true", dest=dest, action="store_const",
                        const=True, default=None, help=help + f"; {name}=false to turn off")
    parser.add_argument(f"{name}=false", dest=dest, action="store_const", const=False,
                        help=argparse.SUPPRESS)


class _Unbuilt:
    """Stands for the parser of a command not named on the command line: every call on it
    is dropped (building all ~60 subparsers took 10-15 ms of a client command's 100)."""

    def __getattr__(self, name: str) -> Callable[..., _Unbuilt]:
        return lambda *args, **kwargs: self


#: Top-level options that take a value (scanned past to find the command word).
_TOP_VALUED = ("--repo", "--config", "--role", "--listen", "--bootstrap")


def _command_word(argv: Sequence[str]) -> str | None:
    """The command named in ``argv`` if it can be told without argparse; None (build every
    parser) for help, abbreviations, or anything unusual before it."""
    i = 0
    while i < len(argv):
        word = argv[i]
        if word in _TOP_VALUED:
            i += 2
        elif word.partition("=")[0] in _TOP_VALUED:
            i += 1
        elif word.startswith("-"):
            return None
        else:
            return word
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with ``only``, the top-level parser with that one command's
    subparser (the rest unbuilt). An unknown ``only`` builds everything, so argparse's
    error lists every command."""
    parser = argparse.ArgumentParser(
        prog="ipfs-kit-node",
        description="A Python IPFS peer. Without a command, runs the daemon in the foreground.",
    )
    parser.add_argument("--version", action="version", version=f"ipfs-kit-node {__version__}")
    _repo_options(parser, top=True)
    _daemon_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    names: set[str] = set()

    def command(name: str, help: str, parent: Any = sub) -> Any:
        if parent is sub:
            names.add(name)
            if only is not None and name != only:
                return _Unbuilt()
        p: argparse.ArgumentParser = parent.add_parser(name, help=help, description=help)
        _repo_options(p, top=False)
        return p

    _daemon_options(command("daemon", "run the daemon in the foreground"), top=False)
    command("id", "show this node's identity (as Kubo's `ipfs id`)")
    command("status", "show role, uptime and peers").add_argument(
        "--enc", choices=("text", "json"), default="text")
    swarm = command("swarm", "connections to other peers")
    swarm_sub = swarm.add_subparsers(dest="swarm_command", metavar="SUBCOMMAND", required=True)
    connect = command("connect", "connect to peers by multiaddr", swarm_sub)
    connect.add_argument("addrs", nargs="+", metavar="MULTIADDR")
    peers = command("peers", "list connected peers", swarm_sub)
    peers.add_argument("--identify", action="store_true", help="include identify details")
    peers.add_argument("--enc", choices=("text", "json"), default="text")
    add = command("add", "import files or folders (UnixFS) into the node, as `ipfs add`")
    add.add_argument("paths", nargs="*", type=Path, metavar="PATH",
                     help="files or folders (none: read stdin)")
    add.add_argument("-r", "--recursive", action="store_true", help="add folders recursively")
    add.add_argument("-H", "--hidden", action="store_true",
                     help="include files whose names start with a dot")
    add.add_argument("-w", "--wrap-with-directory", action="store_true",
                     help="wrap the added files in a folder")
    add.add_argument("--stdin-name", default="", help="name for the file read from stdin")
    add.add_argument("--profile", choices=sorted(PROFILE_NAMES),
                     help="unixfs-v0-2015 (Kubo default) or unixfs-v1-2025 (Helia default)")
    add.add_argument("--cid-version", type=int, choices=(0, 1))
    add.add_argument("--hash", help="sha2-256 (default), blake2b-256, blake3, ... "
                                    "(not sha2-256 implies CIDv1)")
    _flag(add, "--raw-leaves", "raw blocks for leaves (default: with CIDv1)")
    add.add_argument("-s", "--chunker",
                     help="size-N (fixed), rabin[-min-avg-max] or buzhash (as Kubo)")
    add.add_argument("-t", "--trickle", action="store_true", help="trickle DAG layout")
    add.add_argument("--max-links", "--max-file-links", type=int, dest="max_links",
                     help="children per file node (174 in Kubo)")
    add.add_argument("--inline", action="store_true",
                     help="inline blocks of at most --inline-limit bytes in their CIDs")
    add.add_argument("--inline-limit", type=int, default=32)
    add.add_argument("--preserve-mode", action="store_true",
                     help="store POSIX permissions (UnixFS 1.5; turns raw leaves off)")
    add.add_argument("--preserve-mtime", action="store_true",
                     help="store modification times (UnixFS 1.5; turns raw leaves off)")
    add.add_argument("--mode", type=lambda text: int(text, 8), help="mode to store (octal)")
    add.add_argument("--mtime", type=int, help="mtime to store (seconds since the epoch)")
    add.add_argument("--mtime-nsecs", type=int, help="its fraction, in nanoseconds")
    add.add_argument("--cid-base", help="multibase of the CIDs printed (v0 ones upgraded)")
    _flag(add, "--upgrade-cidv0-in-output", "with --cid-base, print CIDv0 as v1")
    add.add_argument("-n", "--only-hash", action="store_true",
                     help="compute CIDs only; store nothing (needs no daemon)")
    add.add_argument("-q", "--quiet", action="store_true", help="print only the CIDs")
    add.add_argument("-Q", "--quieter", action="store_true", help="print only the root CID")
    add.add_argument("--silent", action="store_true", help="print nothing")
    _flag(add, "--progress", "progress bar on stderr (default: on a terminal, big inputs)",
          "-p")
    add.add_argument("--pin", default="true", choices=("true", "false"))
    command("cat", "write a file's bytes to stdout").add_argument("cid")
    get = command("get", "write a file or folder to a path")
    get.add_argument("cid")
    get.add_argument("-o", "--output", type=Path, help="target path (default: the CID)")
    command("ls", "list a folder").add_argument("cid")
    dag = command("dag", "CAR archives: export a DAG, import archives")
    dag_sub = dag.add_subparsers(dest="dag_command", metavar="SUBCOMMAND", required=True)
    command("export", "write a DAG as a CARv1 to stdout", dag_sub).add_argument("cid")
    dag_import = command("import", "store the blocks of CAR files (v1 or v2), each verified, "
                                   "and pin their roots", dag_sub)
    dag_import.add_argument("files", nargs="+", type=Path)
    dag_import.add_argument("--pin-roots", default="true", choices=("true", "false"))
    bitswap = command("bitswap", "the Bitswap engine")
    bitswap_sub = bitswap.add_subparsers(dest="bitswap_command", metavar="SUBCOMMAND",
                                         required=True)
    command("stat", "wantlist, peers, blocks and bytes sent and received", bitswap_sub
            ).add_argument("--enc", choices=("text", "json"), default="text")
    command("wantlist", "blocks we are fetching", bitswap_sub)
    dht = command("dht", "the Kademlia DHT")
    dht_sub = dht.add_subparsers(dest="dht_command", metavar="SUBCOMMAND", required=True)
    command("findprovs", "peers that provide a CID", dht_sub).add_argument("cid")
    command("provide", "announce that we provide a CID", dht_sub).add_argument("cid")
    command("findpeer", "addresses of a peer", dht_sub).add_argument("peer")
    pubsub = command("pubsub", "publish and subscribe (gossipsub)")
    pubsub_sub = pubsub.add_subparsers(dest="pubsub_command", metavar="SUBCOMMAND",
                                       required=True)
    pub = command("pub", "publish DATA (or stdin) to TOPIC", pubsub_sub)
    pub.add_argument("topic")
    pub.add_argument("data", nargs="?")
    command("sub", "print messages on TOPIC as they arrive", pubsub_sub).add_argument("topic")
    command("ls", "topics we are subscribed to", pubsub_sub)
    command("peers", "peers subscribed to TOPIC", pubsub_sub).add_argument("topic")
    repo = command("repo", "the block store")
    repo_sub = repo.add_subparsers(dest="repo_command", metavar="SUBCOMMAND", required=True)
    command("stat", "bytes, blocks and hit ratio of each tier", repo_sub).add_argument(
        "--enc", choices=("text", "json"), default="text")
    command("gc", "remove unpinned blocks, coldest first, down to the GC watermark",
            repo_sub).add_argument("--full", action="store_true",
                                   help="remove every unpinned block (as Kubo's repo gc)")
    command("verify", "re-hash every block; quarantine corrupt ones", repo_sub)
    block = command("block", "raw blocks")
    block_sub = block.add_subparsers(dest="block_command", metavar="SUBCOMMAND", required=True)
    put = command("put", "store a file's bytes as one block; prints its CID", block_sub)
    put.add_argument("file", type=Path)
    put.add_argument("--cid-codec", default="raw", help="raw (default) or dag-pb")
    put.add_argument("--mhtype", default="sha2-256")
    put.add_argument("--pin", action="store_true")
    for name, help in (("get", "write a block's bytes to stdout"),
                       ("stat", "a block's size"), ("rm", "remove an unpinned block")):
        command(name, help, block_sub).add_argument("cid")
    pin = command("pin", "pins in the local store")
    pin_sub = pin.add_subparsers(dest="pin_command", metavar="SUBCOMMAND", required=True)
    add = command("add", "pin DAGs (recursive) or blocks (--recursive=false), fetching "
                  "what is missing from peers first", pin_sub)
    add.add_argument("cid", nargs="+")
    add.add_argument("--recursive", default="true", choices=("true", "false"))
    remote_help = "on Kubo or IPFS Cluster instead (queued durably; see `pin remote ls`)"
    add.add_argument("--remote", choices=("kubo", "cluster"), help=remote_help)
    add.add_argument("--name", default="", help="pin name")
    add.add_argument("--progress", action="store_true", help="show blocks fetched so far")
    add.add_argument("--timeout", type=int, default=60, metavar="S",
                     help="give up on a block no peer sends within S seconds (default 60)")
    rm = command("rm", "unpin", pin_sub)
    rm.add_argument("cid", nargs="+")
    rm.add_argument("--remote", choices=("kubo", "cluster"), help=remote_help)
    pin_ls = command("ls", "list pins (streamed)", pin_sub)
    pin_ls.add_argument("cid", nargs="*")
    pin_ls.add_argument("--remote", choices=("kubo", "cluster"),
                        help="list what Kubo or Cluster holds")
    pin_ls.add_argument("-t", "--type", default="all", choices=("all", "recursive", "direct",
                                                                "indirect"))
    pin_ls.add_argument("-q", "--quiet", action="store_true", help="CIDs only")
    pin_ls.add_argument("-n", "--names", action="store_true", help="show pin names")
    update = command("update", "move a recursive pin from OLD to NEW, fetching only what NEW "
                     "adds", pin_sub)
    update.add_argument("old")
    update.add_argument("new")
    update.add_argument("--unpin", default="true", choices=("true", "false"),
                        help="remove OLD's pin (default true)")
    update.add_argument("--timeout", type=int, default=60, metavar="S")
    pin_verify = command("verify", "check every pinned block is present and intact", pin_sub)
    pin_verify.add_argument("--verbose", action="store_true", help="list good pins too")
    pin_verify.add_argument("-q", "--quiet", action="store_true", help="CIDs of bad pins only")
    pin_remote = command("remote", "the queue of pins on Kubo and IPFS Cluster", pin_sub)
    pin_remote_sub = pin_remote.add_subparsers(dest="pin_remote_command", metavar="SUBCOMMAND",
                                               required=True)
    command("ls", "queued intents (--all: applied and failed too)", pin_remote_sub
            ).add_argument("--all", action="store_true")
    command("status", "a CID's queued intents and whether Kubo/Cluster hold it", pin_sub
            ).add_argument("cid")
    task = command("task", "the task mesh: submit work, follow it, fetch results")
    task_sub = task.add_subparsers(dest="task_command", metavar="SUBCOMMAND", required=True)
    submit = command("submit", "submit a task; prints its ID", task_sub)
    submit.add_argument("handler", metavar="TYPE", help="handler name (e.g. sha256, concat)")
    submit.add_argument("--input", action="append", default=[], metavar="CID")
    submit.add_argument("--param", action="append", default=[], metavar="K=V",
                        help="parameter (numbers, true/false and null are typed)")
    submit.add_argument("--priority", type=int, default=0, help="higher runs first")
    submit.add_argument("--timeout", type=float, metavar="S", help="fail it after S seconds")
    submit.add_argument("--count", type=int, default=1, help="submit N copies (batched)")
    submit.add_argument("--wait", action="store_true", help="wait for the outcome")
    for name, help in (("status", "a task's state"), ("cancel", "cancel a task")):
        command(name, help, task_sub).add_argument("id")
    wait = command("wait", "wait for a task to finish; exit 1 if it failed", task_sub)
    wait.add_argument("id")
    wait.add_argument("--timeout", type=float, default=3600.0, metavar="S")
    listing = command("list", "tasks (on a master: all; elsewhere: submitted here)", task_sub)
    listing.add_argument("--state", choices=("submitting", "queued", "assigned", "done",
                                             "failed", "cancelled"))
    listing.add_argument("--enc", choices=("text", "json"), default="text")
    command("stats", "how many tasks are in each state", task_sub)
    result = command("result", "write a finished task's output to a file", task_sub)
    result.add_argument("id")
    result.add_argument("-o", "--output", type=Path, help="target path (default: stdout)")
    command("workers", "workers with their load and capacity").add_argument(
        "--enc", choices=("text", "json"), default="text")
    cluster = command("cluster", "the master's view of the cluster")
    cluster_sub = cluster.add_subparsers(dest="cluster_command", metavar="SUBCOMMAND",
                                         required=True)
    state = command("state", "export workers and tasks (Parquet: workers.parquet and "
                             "tasks.parquet in a folder)", cluster_sub)
    state.add_argument("--format", choices=("json", "parquet"), default="json")
    state.add_argument("-o", "--output", type=Path,
                       help="folder for parquet (default: cluster-state); file for json")
    config = command("config", "configuration")
    config_sub = config.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    show = command("show", "print the effective config (TOML)", config_sub)
    _daemon_options(show, top=False)
    show.add_argument("--enc", choices=("toml", "json"), default="toml")
    if only is not None and only not in names:
        return build_parser()
    return parser
