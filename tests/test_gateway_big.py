"""A big file through the gateway and through `cat` on the TCP RPC in bounded memory: streamed
out block by block while the daemon's RSS is sampled (it must not grow with the file).

CI runs 256 MiB (~15 s); the 1 GiB case (~60 s, most of it `add`) runs with
``IKN_SLOW=1 pytest -m slow tests/test_gateway_big.py``."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil
import pytest
from helpers import Daemon

#: RSS the daemon may gain while serving the file (the memory tier alone may hold 256 MiB).
MAX_GROWTH = 320 * 1024 * 1024


@pytest.mark.parametrize("size", [
    256 << 20,
    pytest.param(1 << 30, marks=[pytest.mark.slow, pytest.mark.skipif(
        os.environ.get("IKN_SLOW") != "1", reason="1 GiB: set IKN_SLOW=1")]),
])
def test_big_file_through_the_gateway_and_rpc_cat(daemon: Callable[..., Daemon],
                                                  short_tmp: Path, size: int) -> None:
    d = daemon().start(env={"IPFS_KIT_STORAGE_SYNC": "false",
                            "IPFS_KIT_STORAGE_MEMORY_SIZE": "64MiB"})
    path = short_tmp / "big.bin"
    want = hashlib.sha256()
    with open(path, "wb") as out:  # incompressible and not deduplicated: every leaf differs
        block = os.urandom(1 << 20)
        for i in range(size >> 20):
            chunk = i.to_bytes(8, "big") + block[8:]
            want.update(chunk)
            out.write(chunk)
    started = time.monotonic()
    root = d.cli("add", "-Q", "--cid-version", "1", str(path), timeout=600).stdout.strip()
    path.unlink()
    added = time.monotonic()

    assert d.proc is not None
    proc = psutil.Process(d.proc.pid)
    gateway = _sampled_download(proc, "GET", f"{d.gateway_url}/ipfs/{root}", size)
    served = time.monotonic()
    rpc = _sampled_download(proc, "POST", f"{d.rpc_url}/api/v0/cat?arg={root}", size)
    print(f"add {added - started:.1f} s, gateway {served - added:.1f} s, RPC cat "
          f"{time.monotonic() - served:.1f} s; RSS before/peak MiB: gateway {gateway[1] >> 20}"
          f"/{gateway[2] >> 20}, RPC cat {rpc[1] >> 20}/{rpc[2] >> 20}")
    for name, (digest, before, peak) in {"gateway": gateway, "RPC cat": rpc}.items():
        assert digest == want.digest(), name
        assert peak - before < MAX_GROWTH, f"{name}: RSS grew by {(peak - before) >> 20} MiB"
    assert d.api("id")["ID"]


def _sampled_download(proc: psutil.Process, method: str, url: str,
                      size: int) -> tuple[bytes, int, int]:
    """SHA-256 of the streamed body, the daemon's RSS before and its peak while streaming."""
    before = proc.memory_info().rss
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, proc.memory_info().rss)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    got = hashlib.sha256()
    try:
        with httpx.stream(method, url, timeout=120) as r:
            assert r.status_code == 200, r.read()[:500]
            if method == "GET":  # the gateway knows the length; Kubo's cat streams chunked
                assert r.headers["content-length"] == str(size)
            for chunk in r.iter_bytes(1 << 20):
                got.update(chunk)
    finally:
        done.set()
        sampler.join()
    return got.digest(), before, peak
