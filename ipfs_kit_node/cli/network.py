"""Client commands about the peer and its network: id, status, swarm, bitswap, dht, pubsub."""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import ApiError
from .commands import _client_command
from .output import _print_json

TYPE_CHECKING = False  # importing typing costs a CLI command ~4 ms
if TYPE_CHECKING:
    from typing import Any


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
