"""Command line: the daemon (`ipfs-kit-node --role ROLE`) and client subcommands.

Client subcommands talk to the running daemon over the control API socket in the repo. To add
one: write a function taking (args, client) and register it with ``_client_command``.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from .._roles import ROLES
from ..errors import ApiError, ConfigError, IpfsKitError

if TYPE_CHECKING:  # config.py costs ~45 ms: client commands never load it
    from ..config import NodeConfig

PROFILE_NAMES = ("unixfs-v0-2015", "unixfs-v1-2025")
ClientFn = Callable[[argparse.Namespace, Any], int]
_CLIENT_COMMANDS: dict[str, ClientFn] = {}


def _client_command(name: str) -> Callable[[ClientFn], ClientFn]:
    def register(fn: ClientFn) -> ClientFn:
        _CLIENT_COMMANDS[name] = fn
        return fn

    return register


# -- parsing -----------------------------------------------------------------------------------


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


# -- daemon ------------------------------------------------------------------------------------


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


def run_daemon(args: argparse.Namespace) -> int:
    import trio

    from ..logs import configure_logging, get_logger
    from ..node import Node
    from ..repo import Repo

    config = _effective_config(args)
    configure_logging(config.log.level, config.log.format, config.log.libp2p_level)
    log = get_logger("ipfs_kit_node.daemon")
    repo = Repo(_repo_path(args))
    if repo.init():
        log.info("repo created", repo=str(repo.path))
    repo.lock()
    _raise_fd_limit(log)
    try:
        node = Node(config, repo)
        trio.run(_serve_until_signal, node)
    except BaseExceptionGroup as group:
        raise _single_error(group) from None
    finally:
        repo.unlock()
    return 0


def _raise_fd_limit(log: Any) -> None:
    """Raise the soft open-files limit to the hard one, as Kubo does at start: a peer holds
    a socket per connection plus the store's files, and a distro's soft 1,024 runs out."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard or soft == resource.RLIM_INFINITY:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:
        log.warning("cannot raise the open-files limit", soft=soft, hard=hard, error=str(exc))
    else:
        log.info("open-files limit raised", soft=soft, to=hard)


def _single_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one error of ours behind nested task groups (a service that failed to start), so
    the user sees its one line; anything else stays the group it was."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    ours = [e for e in leaves if isinstance(e, IpfsKitError)]
    return ours[0] if len(ours) == 1 else group


async def _serve_until_signal(node: Any) -> None:
    import trio

    from ..service import TaskStatus

    async def stop_on_signal(*, task_status: TaskStatus[None]) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            task_status.started()
            async for signum in signals:
                node.log.info("signal received; stopping", signal=signal.Signals(signum).name)
                node.stop()

    async with trio.open_nursery() as nursery:
        await nursery.start(stop_on_signal)
        await node.run()
        nursery.cancel_scope.cancel()


# -- client commands ---------------------------------------------------------------------------


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2))


@_client_command("id")
def _id(args: argparse.Namespace, client: Any) -> int:
    _print_json(client.call("id"))
    return 0


@_client_command("status")
def _status(args: argparse.Namespace, client: Any) -> int:
    status = client.call("status")
    if args.enc == "json":
        _print_json(status)
    else:
        print(f"role:     {status['Role']} (cluster {status['Cluster']})")
        print(f"peer id:  {status['ID']}")
        print(f"uptime:   {status['Uptime']:.0f} s")
        print(f"peers:    {status['Peers']}")
        for addr in status["Addresses"]:
            print(f"address:  {addr}")
    return 0


@_client_command("swarm")
def _swarm(args: argparse.Namespace, client: Any) -> int:
    if args.swarm_command == "connect":
        for line in client.call("swarm/connect", {"arg": args.addrs})["Strings"]:
            print(line)
        return 0
    peers = client.call("swarm/peers", {"identify": "true"} if args.identify else {})["Peers"]
    if args.enc == "json":
        _print_json(peers)
        return 0
    for p in peers:
        agent = p.get("Identify", {}).get("AgentVersion", "")
        extra = f"  {p['Direction']}, found by {p['FoundBy']}" + (f", {agent}" if agent else "")
        print(f"{p['Addr']}/p2p/{p['Peer']}{extra}")
    return 0


@_client_command("repo")
def _repo(args: argparse.Namespace, client: Any) -> int:
    if args.repo_command == "gc":
        result = client.call("repo/gc", {"full": "true"} if args.full else {})
        print(f"removed {result['Removed']} blocks ({result['Freed']} bytes); "
              f"{result['EvictedToRemote']} moved to the remote tier; "
              f"{result['Remaining']} bytes remain")
        if result.get("PacksRemoved"):
            print(f"compacted: {result['PacksRemoved']} pack files removed "
                  f"({result['PacksReclaimed']} bytes)")
        return 0
    if args.repo_command == "verify":
        result = client.call("repo/verify")
        for cid in result["Corrupt"]:
            print(f"corrupt (quarantined): {cid}")
        for cid in result["Missing"]:
            print(f"missing: {cid}")
        print(f"verified {result['Checked']} blocks: "
              + ("all good" if result["Ok"] else "problems found"))
        return 0 if result["Ok"] else 1
    stat = client.call("repo/stat")
    if args.enc == "json":
        _print_json(stat)
        return 0
    tiers = stat["Tiers"]
    print(f"repo:       {stat['RepoPath']}")
    print(f"{'tier':8} {'blocks':>10} {'bytes':>16} {'hit ratio':>10}")
    for name in ("memory", "disk", "remote"):
        t = tiers[name]
        print(f"{name:8} {t['blocks']:>10,} {t['bytes']:>16,} {t['hit_ratio']:>10.1%}")
    print(f"disk budget {stat['StorageMax']:,} bytes; memory budget "
          f"{tiers['memory']['budget']:,} bytes; pins {tiers['pins']} "
          f"({tiers['pinned_blocks']} blocks)")
    disk = tiers["disk"]
    if disk.get("packs"):
        print(f"packs:      {disk['packs']:,} files, {disk['pack_bytes']:,} bytes, of which "
              f"{disk['pack_dead_bytes']:,} dead (GC's compaction reclaims them)")
    return 0


@_client_command("bitswap")
def _bitswap(args: argparse.Namespace, client: Any) -> int:
    stat = client.call("bitswap/stat")
    if args.bitswap_command == "wantlist":
        for cid in stat["Wantlist"]:
            print(cid)
        return 0
    if args.enc == "json":
        _print_json(stat)
        return 0
    print("bitswap status")
    print(f"\tblocks received: {stat['BlocksReceived']}")
    print(f"\tblocks sent: {stat['BlocksSent']}")
    print(f"\tdata received: {stat['DataReceived']}")
    print(f"\tdata sent: {stat['DataSent']}")
    print(f"\tdup blocks received: {stat['DupBlksReceived']}")
    print(f"\twantlist [{len(stat['Wantlist'])} keys]")
    for cid in stat["Wantlist"]:
        print(f"\t\t{cid}")
    print(f"\tpartners [{len(stat['Peers'])}]")
    for peer in stat["Peers"]:
        print(f"\t\t{peer}")
    return 0


# `dht findprovs` / `dht findpeer` found nothing (1 is any other failure, 2 a usage error).
DHT_NOT_FOUND = 3


@_client_command("dht")
def _dht(args: argparse.Namespace, client: Any) -> int:
    if args.dht_command == "findprovs":
        found = 0
        with client.stream("dht/findprovs", {"arg": args.cid}) as response:
            for line in filter(None, response.iter_lines()):
                for provider in json.loads(line).get("Responses") or []:
                    print(provider["ID"], flush=True)  # each one as the DHT finds it
                    found += 1
        if not found:
            print("no providers found", file=sys.stderr)
            return DHT_NOT_FOUND
        return 0
    if args.dht_command == "provide":
        print(f"provided {client.call('dht/provide', {'arg': args.cid})['Provided']}")
        return 0
    try:
        addrs = client.call("dht/findpeer", {"arg": args.peer})["Addrs"]
    except ApiError as exc:
        if exc.status != 404:
            raise
        print(f"peer not found: {args.peer}", file=sys.stderr)
        return DHT_NOT_FOUND
    for addr in addrs:
        print(addr)
    return 0


@_client_command("pubsub")
def _pubsub(args: argparse.Namespace, client: Any) -> int:
    if args.pubsub_command == "pub":
        data = args.data.encode() if args.data is not None else sys.stdin.buffer.read()
        client.call("pubsub/pub", {"arg": args.topic}, body=data)
    elif args.pubsub_command == "sub":
        with client.stream("pubsub/sub", {"arg": args.topic}) as response:
            for line in response.iter_lines():
                print(line, flush=True)
    else:
        query = {"arg": args.topic} if args.pubsub_command == "peers" else {}
        for text in client.call(f"pubsub/{args.pubsub_command}", query)["Strings"]:
            print(text)
    return 0


@_client_command("block")
def _block(args: argparse.Namespace, client: Any) -> int:
    if args.block_command == "put":
        args_ = {"cid-codec": args.cid_codec, "mhtype": args.mhtype}
        if args.pin:
            args_["pin"] = "true"
        print(client.call("block/put", args_, body=args.file.read_bytes())["Key"])
    elif args.block_command == "get":
        with client.stream("block/get", {"arg": args.cid}) as response:
            for chunk in response.iter_bytes():
                sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
    elif args.block_command == "stat":
        stat = client.call("block/stat", {"arg": args.cid})
        print(f"Key: {stat['Key']}\nSize: {stat['Size']}")
    else:
        print(f"removed {client.call('block/rm', {'arg': args.cid})['Hash']}")
    return 0


def _print_intent(intent: dict[str, Any]) -> None:
    retry = f", retry in {intent['retry_in']} s" if intent.get("retry_in") else ""
    error = f": {intent['error']}" if intent["error"] else ""
    print(f"{intent['action']} {intent['cid']} on {intent['target']}: {intent['state']} "
          f"(attempts {intent['attempts']}{retry}){error}")


@_client_command("pin")
def _pin(args: argparse.Namespace, client: Any) -> int:
    if args.pin_command == "remote":
        for intent in client.call("pin/remote/ls", {"all": "true"} if args.all else {}
                                  )["Intents"]:
            _print_intent(intent)
        return 0
    if args.pin_command == "status":
        status = client.call("pin/remote/status", {"arg": args.cid})
        for intent in status["Intents"]:
            _print_intent(intent)
        for name, answer in status["Remote"].items():
            if answer.get("Pinned"):
                print(f"{name}: pinned")
            else:
                error = answer.get("Error")
                print(f"{name}: not pinned" + (f" ({error})" if error else ""))
        return 0
    if getattr(args, "remote", None):
        if args.pin_command == "ls":
            with client.stream("pin/remote/pins", {"remote": args.remote}) as response:
                for line in response.iter_lines():
                    if line.strip():
                        doc = json.loads(line)
                        print(f"{doc['Cid']} {doc.get('Type') or ','.join(doc['Status'])}")
            return 0
        route = "pin/remote/add" if args.pin_command == "add" else "pin/remote/rm"
        for cid in args.cid:
            query = {"arg": cid, "remote": args.remote}
            if args.pin_command == "add" and args.name:
                query["name"] = args.name
            intent = client.call(route, query)
            print(f"queued {intent['action']} of {intent['cid']} on {intent['target']} "
                  f"({intent['state']}; follow it with `pin status {intent['cid']}`)")
        return 0
    if args.pin_command == "ls":
        return _pin_ls(args, client)
    if args.pin_command == "add":
        query = {"arg": args.cid, "recursive": args.recursive, "progress": "true",
                 "timeout": str(args.timeout)}
        if args.name:
            query["name"] = args.name
        pins: list[str] = []
        with client.stream("pin/add", query) as response:
            for line in filter(None, response.iter_lines()):
                doc = json.loads(line)
                if doc.get("Type") == "error":
                    _clear_progress(args.progress)
                    raise IpfsKitError(doc["Message"])
                if "Pins" not in doc and args.progress:  # as Kubo's CLI prints it
                    print(f"Fetched/Processed {doc.get('Progress', 0)} nodes "
                          f"({_si_bytes(doc.get('Bytes', 0))})\r", end="", file=sys.stderr,
                          flush=True)
                pins = doc.get("Pins", pins)
        _clear_progress(args.progress)
        for cid in pins:
            print(f"pinned {cid} {'recursively' if args.recursive == 'true' else 'directly'}")
        return 0
    if args.pin_command == "update":
        done: dict[str, Any] = {}
        with client.stream("pin/update", {"arg": [args.old, args.new], "unpin": args.unpin,
                                          "timeout": str(args.timeout), "progress": "true"}
                           ) as response:  # streamed: progress ticks keep the read alive
            for line in filter(None, response.iter_lines()):
                doc = json.loads(line)
                if doc.get("Type") == "error":
                    raise IpfsKitError(doc["Message"])
                done = doc if "Pins" in doc else done
        print(f"updated {done['Pins'][0]} to {done['Pins'][1]} ({done['Fetched']} blocks, "
              f"{done['FetchedBytes']} bytes fetched)")
        return 0
    if args.pin_command == "verify":
        bad = 0
        query = {"verbose": "true"} if args.verbose else {"quiet": "true"} if args.quiet \
            else {}
        with client.stream("pin/verify", query) as response:
            for line in filter(None, response.iter_lines()):
                doc = json.loads(line)  # Kubo's PinVerifyRes: {Cid, Ok, BadNodes}
                ok = bool(doc.get("Ok"))
                bad += not ok
                if args.quiet:
                    if not ok:
                        print(doc["Cid"])
                    continue
                print(f"{doc['Cid']} {'ok' if ok else 'broken'}")
                for node in doc.get("BadNodes", []):
                    print(f"  {node['Cid']}: {node['Err']}")
        return 1 if bad else 0
    for cid in client.call("pin/rm", {"arg": args.cid})["Pins"]:
        print(f"unpinned {cid}")
    return 0


def _si_bytes(n: int) -> str:
    """Bytes as Kubo's CLI prints them (go-humanize.Bytes: SI units, one decimal under 10)."""
    if n < 10:
        return f"{n} B"
    units = ("B", "kB", "MB", "GB", "TB", "PB", "EB")
    exp = min(int(math.log(n, 1000)), len(units) - 1)
    value = math.floor(n / 1000**exp * 10 + 0.5) / 10
    return f"{value:.1f} {units[exp]}" if value < 10 else f"{value:.0f} {units[exp]}"


def _clear_progress(shown: bool) -> None:
    if shown:
        print(file=sys.stderr, flush=True)


def _pin_ls(args: argparse.Namespace, client: Any) -> int:
    """As Kubo prints it: ``CID TYPE`` (``-q``: CID; ``-n``: and the name), streamed."""
    query: dict[str, Any] = {"type": args.type, "stream": "true"}
    if args.names:
        query["names"] = "true"
    if args.cid:
        query["arg"] = args.cid
        keys = client.call("pin/ls", query)["Keys"]
        docs = [{"Cid": cid, **info} for cid, info in keys.items()]
        for doc in docs:
            _print_pin(doc, args)
        return 0
    with client.stream("pin/ls", query) as response:
        for line in filter(None, response.iter_lines()):
            _print_pin(json.loads(line), args)
    return 0


def _print_pin(doc: dict[str, Any], args: argparse.Namespace) -> None:
    if args.quiet:
        print(doc["Cid"])
    elif args.names:
        print(f"{doc['Cid']} {doc['Type']} {doc.get('Name', '')}".rstrip())
    else:
        print(f"{doc['Cid']} {doc['Type']}")


def _import_params(args: argparse.Namespace) -> Any:
    from ..unixfs.importer import ImportParams

    try:
        return ImportParams.kubo(
            profile=args.profile, cid_version=args.cid_version, raw_leaves=args.raw_leaves,
            chunker=args.chunker, hash=args.hash, trickle=args.trickle or None,
            max_links=args.max_links, inline=args.inline, inline_limit=args.inline_limit,
            hidden=args.hidden, wrap_with_directory=args.wrap_with_directory,
            preserve_mode=args.preserve_mode, preserve_mtime=args.preserve_mtime,
            mode=args.mode, mtime=args.mtime, mtime_nsecs=args.mtime_nsecs)
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
    from ..unixfs.importer import Added, Block

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


@_client_command("add")
def _add(args: argparse.Namespace, client: Any) -> int:
    from ..codecs.putmany import encode_frame, encode_frame_head
    from ..unixfs.importer import Block

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


# Kubo's ls Type numbers (UnixFS Data types): folder, file, symlink.
_DIR, _FILE, _SYMLINK = 1, 2, 4
_GET_MAX_DEPTH = 4096  # as the daemon's DAG walks (exporter.MAX_DEPTH)


def _stream_to_stdout(client: Any, command: str, cid: str) -> int:
    """A streamed answer written to stdout as it arrives (a reader that leaves is no error)."""
    try:
        sys.stdout.flush()
        with client.stream(command, {"arg": cid}) as response:
            response.copy_to(sys.stdout.fileno())
    except BrokenPipeError:
        _stdout_gone()
    return 0


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


def _stdout_gone() -> None:
    """`cat CID | head` closed our stdout early: stop quietly (no error at exit's flush)."""
    import os

    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


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
    replaces a symlink there; it never writes through one)."""
    import contextlib
    import os
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".ikn-get-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, client.stream("cat", {"arg": cid}) as response:
            response.copy_to(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _show(path: Path, limit: int = 160) -> str:
    """A path for an error message: a 5,000-level one is shortened in the middle."""
    text = str(path)
    return text if len(text) <= limit else f"{text[:60]}...{text[-(limit - 63):]}"


def _param(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise IpfsKitError(f"--param takes KEY=VALUE, got {text!r}")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    if not isinstance(value, str | int | float | bool | type(None)):
        value = raw
    return key, value


@_client_command("task")
def _task(args: argparse.Namespace, client: Any) -> int:
    if args.task_command == "submit":
        task: dict[str, Any] = {"handler": args.handler, "inputs": args.input,
                                "params": dict(_param(p) for p in args.param),
                                "priority": args.priority}
        if args.timeout is not None:
            task["timeout"] = args.timeout
        answer = client.call("task/submit", body=json.dumps(
            {"tasks": [task] * max(1, args.count)}).encode())
        for task_id, reason in answer["Refused"]:
            print(f"refused {task_id}: {reason}", file=sys.stderr)
        for task_id in answer["Accepted"]:
            print(task_id)
        if answer["Refused"]:
            return 1
        if args.wait:
            return max(_print_outcome(client.call("task/wait", {"arg": i}))
                       for i in answer["Accepted"])
        return 0
    if args.task_command == "wait":
        return _print_outcome(client.call("task/wait", {"arg": args.id,
                                                        "timeout": str(args.timeout)}))
    if args.task_command == "stats":
        _print_json(client.call("task/stats")["States"])
        return 0
    if args.task_command in ("status", "cancel"):
        _print_json(client.call(f"task/{args.task_command}", {"arg": args.id}))
        return 0
    if args.task_command == "list":
        tasks = client.call("task/list", {"state": args.state} if args.state else {})["Tasks"]
        if args.enc == "json":
            _print_json(tasks)
        for t in tasks if args.enc == "text" else ():
            print(f"{t['ID']}  {t['State']:<9}  {t['Handler']:<12}  "
                  f"{t['Output'] or t['Error'] or ''}")
        return 0
    info = client.call("task/status", {"arg": args.id})  # result
    if info["State"] != "done":
        raise IpfsKitError(f"task {args.id} is {info['State']}"
                           + (f": {info['Error']}" if info["Error"] else ""))
    if info["Output"] is None:
        raise IpfsKitError(f"task {args.id} finished without an output")
    if args.output is None:
        return _cat(argparse.Namespace(cid=info["Output"]), client)
    _fetch_into(client, info["Output"], args.output)
    print(f"saved {info['Output']} to {args.output}")
    return 0


def _print_outcome(info: dict[str, Any]) -> int:
    if info["State"] == "done":
        print(f"{info['ID']} done: {info['Output'] or '(no output)'}")
        return 0
    print(f"{info['ID']} {info['State']}" + (f": {info['Error']}" if info["Error"] else ""),
          file=sys.stderr)
    return 1


@_client_command("workers")
def _workers(args: argparse.Namespace, client: Any) -> int:
    workers = client.call("workers")["Workers"]
    if args.enc == "json":
        _print_json(workers)
        return 0
    print(f"{'PEER':<54} {'RUNNING':>7} {'CAPACITY':>8} {'CPU%':>6} {'MEM%':>6}  ALIVE")
    for w in workers:
        print(f"{w['peer']:<54} {w['running']:>7} {w['capacity']:>8} {w['cpu']:>6.1f} "
              f"{w['memory']:>6.1f}  {'yes' if w['alive'] else 'no'}")
    return 0


@_client_command("cluster")
def _cluster(args: argparse.Namespace, client: Any) -> int:
    state = client.call("cluster/state")
    if args.format == "json":
        text = json.dumps(state, indent=1)
        if args.output is None:
            print(text)
        else:
            args.output.write_text(text + "\n")
        return 0
    from ..roles.state import write_parquet

    for name, path in write_parquet(state, args.output or Path("cluster-state")).items():
        print(f"{name}: {path}")
    return 0


def _config_show(args: argparse.Namespace) -> int:
    config = _effective_config(args)
    if args.enc == "json":
        _print_json(config.to_dict())
    else:
        sys.stdout.write(config.to_toml())
    return 0


def run_client(args: argparse.Namespace) -> int:
    """A client command through the public Client (the same one Python users get), on the
    repo's unix socket."""
    from ..client import Client

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


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(_command_word(words)).parse_args(words)
    try:
        if args.command in (None, "daemon"):
            return run_daemon(args)
        if args.command == "config":
            return _config_show(args)
        if args.command == "add" and args.only_hash:
            return _add_only_hash(args)
        return run_client(args)
    except ConfigError as exc:
        print(f"Error: invalid configuration: {exc}", file=sys.stderr)
        return 2
    except IpfsKitError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 1))
    except OSError as exc:  # a file we were told to read or write: one line, not a traceback
        where = f": {exc.filename}" if exc.filename else ""
        print(f"Error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
