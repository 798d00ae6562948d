"""A versioned dataset: two versions of a Parquet file on the node, each read back by its CID.

Content addressing is the version control: a changed file gets a new CID and the old one
still reads the old bytes. A small JSON catalogue (itself stored on the node) lists the
versions; pandas reads any of them through ``ipfs-kit://CID`` with range reads.

    IPFS_KIT_PATH=~/.ipfs-kit-node python examples/versioned_dataset.py

Prints one JSON summary line (the catalogue's CID and each version's rows and total).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from ipfs_kit_node import Client


def sales(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "region": rng.choice(["north", "south", "east", "west"], rows),
        "month": rng.integers(1, 13, rows),
        "amount": rng.random(rows).round(2) * 1000,
    })


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", help="the daemon's RPC (default: the repo's socket)")
    parser.add_argument("--rows", type=int, default=20_000)
    args = parser.parse_args(argv)
    client = Client(args.api)

    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "sales.parquet"
        v1 = sales(args.rows, seed=1)
        v1.to_parquet(path, index=False)
        cid1 = client.add(path)
        # Version 2: a month of new rows and a correction to the old ones.
        v2 = pd.concat([v1, sales(args.rows // 10, seed=2)], ignore_index=True)
        v2.loc[v2["region"] == "east", "amount"] *= 1.1
        v2.to_parquet(path, index=False)
        cid2 = client.add(path)

    catalogue = {"name": "sales", "versions": [{"version": 1, "cid": cid1},
                                               {"version": 2, "cid": cid2}]}
    catalogue_cid = client.add_bytes(json.dumps(catalogue).encode())

    # Later, anywhere: the catalogue's CID is all a reader needs.
    storage = {"api": args.api} if args.api else {}
    found = json.loads(client.cat(catalogue_cid))
    summary: dict[str, object] = {"catalogue": catalogue_cid}
    for entry in found["versions"]:
        df = pd.read_parquet(f"ipfs-kit://{entry['cid']}", storage_options=storage)
        expected = v1 if entry["version"] == 1 else v2
        assert df.equals(expected), f"version {entry['version']} differs"
        east = pd.read_parquet(f"ipfs-kit://{entry['cid']}", columns=["region", "amount"],
                               storage_options=storage)
        summary[f"v{entry['version']}"] = {
            "cid": entry["cid"], "rows": len(df), "total": round(float(df["amount"].sum()), 2),
            "east": round(float(east[east["region"] == "east"]["amount"].sum()), 2)}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
