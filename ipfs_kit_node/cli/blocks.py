"""Client commands on the local block store: repo (stat, gc, verify) and raw blocks."""

from __future__ import annotations

import argparse
import sys

from .commands import _client_command
from .output import _print_json

TYPE_CHECKING = False  # importing typing costs a CLI command ~4 ms
if TYPE_CHECKING:
    from typing import Any


@_client_command("repo")
def _repo(args: argparse.Namespace, client: Any) -> int:
    if args.repo_command == "gc":
        if client.endpoint.kubo:  # Kubo's RPC: every unpinned block, a line for each removed
            with client.stream("repo/gc") as response:
                removed = sum(1 for line in response.iter_lines() if line.strip())
            print(f"removed {removed} blocks (Kubo's RPC: every unpinned block; --full and "
                  "the watermark apply on the API socket)")
            return 0
        result = client.call("repo/gc", {"full": "true"} if args.full else {})
        print(f"removed {result['Removed']:,} blocks ({result['Freed']:,} bytes); "
              f"{result['EvictedToRemote']:,} moved to the remote tier; "
              f"{result['Remaining']:,} bytes remain")
        if result.get("PacksRemoved"):
            print(f"compacted: {result['PacksRemoved']:,} pack files removed "
                  f"({result['PacksReclaimed']:,} bytes)")
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
        # Dead bytes a hole already freed take no disk; those still on disk are freed by
        # compaction (at GC for packs under half live, at once past a quarter of the budget).
        print(f"packs:      {disk['packs']:,} files, {disk['pack_bytes']:,} bytes, of which "
              f"{disk['pack_dead_bytes']:,} dead still on disk (compaction frees them) and "
              f"{disk.get('pack_freed_bytes', 0):,} dead already freed (punched out)")
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
