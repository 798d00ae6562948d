"""The pin command: local pins (add with progress, rm, ls, update, verify) and the queue of
remote pins on Kubo and IPFS Cluster."""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import IpfsKitError
from .commands import _client_command
from .output import _si_bytes

TYPE_CHECKING = False  # importing typing costs a CLI command ~4 ms
if TYPE_CHECKING:
    from typing import Any


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
