"""A model registry on the node: model files saved and loaded by CID, a JSON index of names
and versions (itself stored on the node: its CID is the registry's state).

Never pickle: the weights go as ``.npz`` (NumPy arrays, loaded with ``allow_pickle=False``)
when NumPy is installed, else as JSON; any safe format (safetensors, ONNX) fits the same way,
as plain bytes with a ``format`` field in the index.

    IPFS_KIT_PATH=~/.ipfs-kit-node python examples/model_registry.py [--index CID]

Prints one JSON summary line (the index's CID, each version's CID and its error on test data).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import random
import time
from typing import Any

from ipfs_kit_node import Client

try:
    import numpy as np
except ImportError:  # JSON weights then
    np = None  # type: ignore[assignment]


class Registry:
    """Names -> versions -> model CIDs, as one JSON document on the node."""

    def __init__(self, client: Client, index_cid: str | None = None) -> None:
        self.client = client
        self.index: dict[str, Any] = json.loads(client.cat(index_cid)) if index_cid \
            else {"models": {}}
        self.cid = index_cid

    def save(self, name: str, weights: dict[str, Any], **meta: Any) -> dict[str, Any]:
        data, fmt = encode(weights)
        cid = self.client.add_bytes(data)
        versions = self.index["models"].setdefault(name, [])
        entry = {"version": len(versions) + 1, "cid": cid, "format": fmt,
                 "sha256": hashlib.sha256(data).hexdigest(), "saved": time.time(), **meta}
        versions.append(entry)
        self.cid = self.client.add_bytes(json.dumps(self.index, sort_keys=True).encode())
        return entry

    def load(self, name: str, version: int | None = None) -> dict[str, Any]:
        versions = self.index["models"][name]
        entry = versions[-1] if version is None else versions[version - 1]
        data = self.client.cat(entry["cid"])
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise ValueError(f"{name} v{entry['version']}: checksum differs")
        return decode(data, entry["format"])


def encode(weights: dict[str, Any]) -> tuple[bytes, str]:
    if np is not None:
        buf = io.BytesIO()
        arrays = {k: np.asarray(v, dtype=np.float64) for k, v in weights.items()}
        np.savez(buf, **arrays)  # type: ignore[arg-type]
        return buf.getvalue(), "npz"
    return json.dumps(weights).encode(), "json"


def decode(data: bytes, fmt: str) -> dict[str, Any]:
    if fmt == "npz":
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            return {k: arrays[k] for k in arrays.files}
    if fmt == "json":
        return dict(json.loads(data))
    raise ValueError(f"unknown model format {fmt!r}")


def fit(xs: list[list[float]], ys: list[float]) -> dict[str, Any]:
    """Least squares: y = x . w + b."""
    if np is not None:
        a = np.hstack([np.asarray(xs), np.ones((len(xs), 1))])
        solution = np.linalg.lstsq(a, np.asarray(ys), rcond=None)[0]
        return {"w": solution[:-1], "b": solution[-1:]}
    # Without NumPy: one feature is enough for the example (closed form).
    x = [row[0] for row in xs]
    mx, my = sum(x) / len(x), sum(ys) / len(ys)
    w = sum((a - mx) * (b - my) for a, b in zip(x, ys, strict=True)) / \
        sum((a - mx) ** 2 for a in x)
    return {"w": [w] + [0.0] * (len(xs[0]) - 1), "b": [my - w * mx]}


def predict(model: dict[str, Any], x: list[float]) -> float:
    return float(sum(float(w) * v for w, v in zip(model["w"], x, strict=True))
                 + float(model["b"][0]))


def data(n: int, seed: int) -> tuple[list[list[float]], list[float]]:
    rng = random.Random(seed)
    xs = [[rng.uniform(-1, 1) for _ in range(3)] for _ in range(n)]
    ys = [2 * a - 3 * b + 0.5 * c + 1 + rng.gauss(0, 0.1) for a, b, c in xs]
    return xs, ys


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", help="the daemon's RPC (default: the repo's socket)")
    parser.add_argument("--index", help="an existing registry index CID to extend")
    args = parser.parse_args(argv)
    registry = Registry(Client(args.api), args.index)

    test_x, test_y = data(200, seed=99)
    for version, samples in enumerate((20, 2000), start=1):
        xs, ys = data(samples, seed=version)
        registry.save("linear", fit(xs, ys), samples=samples)

    # Anyone holding the index CID loads any version, checked against its digest.
    reader = Registry(Client(args.api), registry.cid)
    summary: dict[str, Any] = {"index": registry.cid, "versions": []}
    for entry in reader.index["models"]["linear"]:
        model = reader.load("linear", entry["version"])
        mse = sum((predict(model, x) - y) ** 2 for x, y in zip(test_x, test_y, strict=True)) \
            / len(test_y)
        summary["versions"].append({"version": entry["version"], "cid": entry["cid"],
                                    "format": entry["format"], "mse": round(mse, 5)})
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
