"""The Kubo RPC driver against a real Kubo-compatible server: js-ipfs 0.66.1 from npm."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from helpers import Daemon, JsIpfs, free_port

from ipfs_kit_node.errors import PinningError, RemoteRefusedError, RemoteUnavailableError
from ipfs_kit_node.pinning.base import Credentials
from ipfs_kit_node.pinning.kubo import KuboClient

pytestmark = pytest.mark.interop
MakeDaemon = Callable[..., Daemon]


async def test_id_add_blocks_and_pins(jsipfs: JsIpfs) -> None:
    kubo = KuboClient(jsipfs.api, timeout=30)
    assert (await kubo.id())["ID"].startswith("12D3KooW")
    assert await kubo.version()
    data = os.urandom(700_000)

    async def chunks() -> AsyncIterator[bytes]:  # streamed up, never whole in one buffer
        for i in range(0, len(data), 65536):
            yield data[i:i + 65536]

    added = await kubo.add(chunks(), "file.bin", cid_version=1, raw_leaves=True)
    assert added.size >= len(data) and added.cid.startswith("b")
    block = b"a raw block"
    key = await kubo.block_put(block)
    assert await kubo.block_get(key) == block
    assert await kubo.pin_add(key) == [key]
    pins = {cid: kind async for cid, kind in kubo.pin_ls()}
    assert pins[key] == "recursive" and pins[added.cid] == "recursive"
    assert await kubo.is_pinned(key)
    assert await kubo.pin_rm(key) == [key]
    assert not await kubo.is_pinned(key)
    with pytest.raises(PinningError, match="not pinned"):
        await kubo.pin_rm(key)  # Kubo's error body becomes our exception, message intact


async def test_unreachable_unsupported_and_unauthorised_are_clear(jsipfs: JsIpfs) -> None:
    nobody = KuboClient(f"/ip4/127.0.0.1/tcp/{free_port()}", timeout=5)
    with pytest.raises(RemoteUnavailableError, match="unreachable"):
        await nobody.id()
    kubo = KuboClient(jsipfs.api, credentials=Credentials("bearer", "s3cret"), timeout=10)
    assert "s3cret" not in repr(kubo.credentials)
    with pytest.raises(RemoteRefusedError, match="pin/update"):  # js-ipfs has no pin/update
        await kubo.pin_update("bafkqaaa", "bafkqaaa")


async def test_jsipfs_fetches_our_block_over_bitswap(jsipfs: JsIpfs, daemon: MakeDaemon,
                                                     short_tmp: Path) -> None:
    ours = daemon().start()
    f = short_tmp / "ours.bin"
    f.write_bytes(os.urandom(300_000))
    cid = ours.cli("add", "-Q", "--cid-version", "1", str(f)).stdout.strip()
    kubo = KuboClient(jsipfs.api, timeout=60)
    # js-ipfs offers mplex only; our host still speaks it (Yamux first, then mplex).
    assert (await kubo.swarm_connect([ours.addr]))[0].startswith("connect")
    assert await kubo.pin_add(cid) == [cid]  # js-ipfs fetched the whole DAG from us
    assert ours.api("bitswap/stat")["BlocksSent"] >= 3  # root and two 256 KiB leaves
    data = b"".join([chunk async for chunk in kubo.cat(cid)])
    assert hashlib.sha256(data).digest() == hashlib.sha256(f.read_bytes()).digest()
