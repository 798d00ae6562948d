"""Identity CIDs (`add --inline`) over the RPC, as Kubo: present without being stored, so
`add --pin` pins, `pin add`/`verify`/`ls` and GC agree, and `block/get`, `block/stat` and
`cat` answer from the CID. One real daemon."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from helpers import Daemon
from inline_dir import add_inline_dir

MakeDaemon = Callable[..., Daemon]


def test_inline_add_pins_and_identity_blocks_read(daemon: MakeDaemon) -> None:
    d = daemon(name="a").start()
    rpc = f"{d.rpc_url}/api/v0"
    added = add_inline_dir(d.rpc_url)
    root, tiny = added["d"], added["d/small"]

    def pins(kind: str) -> dict[str, object]:
        out = httpx.post(f"{rpc}/pin/ls?type={kind}", timeout=30)
        assert out.status_code == 200, out.text
        return out.json()["Keys"]  # type: ignore[no-any-return]

    assert set(pins("recursive")) == {root}  # was empty: the pin failed after "success"
    r = httpx.post(f"{rpc}/pin/add?arg={tiny}", timeout=30)
    assert r.status_code == 200 and r.json()["Pins"] == [tiny], r.text
    assert set(pins("recursive")) == {root, tiny}
    r = httpx.post(f"{rpc}/pin/verify", timeout=60)
    assert r.status_code == 200 and "false" not in r.text.lower(), r.text

    assert httpx.post(f"{rpc}/repo/gc", timeout=60).status_code == 200
    r = httpx.post(f"{rpc}/block/get?arg={tiny}", timeout=30)
    assert r.status_code == 200 and r.content == b"tiny", r.text
    r = httpx.post(f"{rpc}/block/stat?arg={tiny}", timeout=30)
    assert r.status_code == 200 and r.json() == {"Key": tiny, "Size": 4}, r.text
    r = httpx.post(f"{rpc}/cat?arg={tiny}", timeout=30)
    assert r.status_code == 200 and r.content == b"tiny", r.text
    r = httpx.post(f"{rpc}/cat?arg={root}/small", timeout=30)
    assert r.status_code == 200 and r.content == b"tiny", r.text

    r = httpx.post(f"{rpc}/pin/rm?arg={tiny}", timeout=30)
    assert r.status_code == 200, r.text
    assert set(pins("recursive")) == {root}
