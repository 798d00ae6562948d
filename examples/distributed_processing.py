"""Distributed processing: a corpus split into 100 partitions, each counted by a worker with
the ``word-count`` handler of examples/handler_package, the results combined here.

Nothing but CIDs and JSON crosses the network: the partitions are added to the node, the
tasks name a handler the workers have installed, and the outputs come back as JSON.

    pip install examples/handler_package     # on each worker; name it in [tasks] handlers
    IPFS_KIT_PATH=/path/to/master/repo python examples/distributed_processing.py

Prints one JSON summary line (partitions, words counted on the mesh and locally, tasks per
worker).
"""

from __future__ import annotations

import argparse
import collections
import json
import random

from ipfs_kit_node import Client

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa",
         "lambda", "mu"]


def partitions(n: int, seed: int = 5) -> list[bytes]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(50, 500))).encode()
            for _ in range(n)]


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", help="the master's RPC (default: the repo's socket)")
    parser.add_argument("--partitions", type=int, default=100)
    args = parser.parse_args(argv)
    client = Client(args.api, timeout=120)

    parts = partitions(args.partitions)
    cids = [client.add_bytes(part) for part in parts]
    with client.executor(result="json") as ex:  # all 100 go out in one task/submit
        futures = [ex.submit("word-count", input=cid) for cid in cids]
        counts = [f.result(timeout=120)["words"] for f in futures]

    ran_on = collections.Counter(
        t.worker for t in client.task.list("done") if t.id in {f.task_id for f in futures})
    summary = {"partitions": len(cids), "words": sum(counts),
               "expected": sum(len(p.split()) for p in parts),
               "per_worker": dict(ran_on)}
    assert summary["words"] == summary["expected"]
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
