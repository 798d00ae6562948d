"""Client commands of the task mesh: task (submit, wait, status, cancel, list, stats, result),
workers and the master's cluster state."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import IpfsKitError
from .commands import _client_command
from .files import _cat, _fetch_into
from .output import _print_json

TYPE_CHECKING = False  # importing typing costs a CLI command ~4 ms
if TYPE_CHECKING:
    from typing import Any


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
        # --wait: the IDs are printed first (Ctrl-C leaves them on screen, to wait on or
        # cancel), then each outcome; so not task/submit?wait=true, which answers at the end.
        answer = client.call("task/submit", body=json.dumps(
            {"tasks": [task] * max(1, args.count)}).encode())
        for task_id, reason in answer["Refused"]:
            print(f"refused {task_id}: {reason}", file=sys.stderr)
        for task_id in answer["Accepted"]:
            print(task_id, flush=True)
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
