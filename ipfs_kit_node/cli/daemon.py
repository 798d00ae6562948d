"""The daemon command: the node runs in the foreground on a locked repo until SIGTERM/SIGINT.
Everything daemon-only (trio, the node, py-libp2p) is imported here, at start."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

from ..errors import IpfsKitError
from .settings import _effective_config, _repo_path

SWITCH_INTERVAL = 0.0005  # seconds; see run_daemon


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
    # The event loop waits at most 0.5 ms (CPython: 5 ms) for the GIL while a worker thread
    # runs Python (store reads and writes, Bitswap decoding): a daemon fetching 64 MiB over
    # Bitswap used 0.74-0.78 s of CPU instead of 0.81-0.84 (alternating runs).
    sys.setswitchinterval(SWITCH_INTERVAL)
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
