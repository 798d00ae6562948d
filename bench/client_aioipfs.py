"""The aioipfs side of bench/client.py: N small add_bytes then N cat calls, one at a time,
over a daemon's Kubo RPC on TCP. Runs in the scratch venv of tests/interop/test_aioipfs.py
(aioipfs pins aiohttp 3.9.5), so it imports nothing of ours.

Usage: client_aioipfs.py HOST PORT N PREFIX -> prints {"add": seconds, "cat": seconds}
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import aioipfs


async def main(host: str, port: int, n: int, prefix: str) -> dict[str, float]:
    client = aioipfs.AsyncIPFS(host=host, port=port)
    try:
        payloads = [f"{prefix}-{i}-".encode() * 40 for i in range(n)]
        await client.core.add_bytes(b"warm up " + prefix.encode())
        started = time.perf_counter()
        cids = [(await client.core.add_bytes(p))["Hash"] for p in payloads]
        added = time.perf_counter() - started
        started = time.perf_counter()
        for cid, payload in zip(cids, payloads, strict=True):
            assert await client.core.cat(cid) == payload
        return {"add": added, "cat": time.perf_counter() - started}
    finally:
        await client.close()


if __name__ == "__main__":
    host, port, n, prefix = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    print(json.dumps(asyncio.run(main(host, port, n, prefix))))
