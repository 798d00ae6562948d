"""`pin update` and `pin rm` in the cases boxo settles. Update: OLD the same as NEW changes
nothing, NEW pinned recursively already is refused (it was replaced, losing its name), OLD not
pinned recursively is refused; the name goes from OLD to NEW. Rm: `--recursive=false` refuses a
recursive pin (it was removed), a CID that is no pin is refused. Add: a direct pin of a
recursive one is refused, a pin made again takes the new name, a name over 255 bytes is
refused. Ls: `name` keeps the pins whose names contain it. One real daemon, RPC."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from helpers import Daemon

MakeDaemon = Callable[..., Daemon]


def test_pin_update_and_rm_edge_cases_answer_as_kubo(daemon: MakeDaemon) -> None:
    d = daemon(name="a").start()
    rpc = f"{d.rpc_url}/api/v0"

    def post(path: str, *args: str, **params: str) -> httpx.Response:
        return httpx.post(f"{rpc}/{path}", params=[*(("arg", a) for a in args),
                                                   *params.items()], timeout=60)

    def add(data: bytes) -> str:
        r = httpx.post(f"{rpc}/add?pin=false", files={"file": ("f", data)}, timeout=60)
        assert r.status_code == 200, r.text
        return str(r.json()["Hash"])

    def pins() -> dict[str, dict[str, str]]:
        return post("pin/ls", type="recursive", names="true").json()["Keys"]  # type: ignore

    one, two, three = add(b"one\n"), add(b"two\n"), add(b"three\n")
    assert post("pin/add", one, name="mine").status_code == 200
    assert post("pin/add", two, name="other").status_code == 200

    r = post("pin/update", one, two)
    assert r.status_code == 500 and r.json()["Message"] == \
        "'to' cid was already recursively pinned", r.text  # it replaced that pin
    assert pins() == {one: {"Type": "recursive", "Name": "mine"},
                      two: {"Type": "recursive", "Name": "other"}}
    r = post("pin/update", one, one)
    assert r.status_code == 200, r.text
    assert pins()[one] == {"Type": "recursive", "Name": "mine"}  # still pinned
    r = post("pin/update", three, two)
    assert r.status_code == 500 and r.json()["Message"] == \
        "'from' cid was not recursively pinned already", r.text

    r = post("pin/update", one, three)
    assert r.status_code == 200 and r.json()["Pins"] == [one, three], r.text
    assert pins() == {three: {"Type": "recursive", "Name": "mine"},
                      two: {"Type": "recursive", "Name": "other"}}

    assert post("pin/add", three, name="renamed").status_code == 200
    assert pins()[three] == {"Type": "recursive", "Name": "renamed"}  # kept "mine"
    assert post("pin/ls", name="ren").json()["Keys"] == {
        three: {"Type": "recursive", "Name": "renamed"}}  # Kubo's name filter: a substring
    r = post("pin/add", two, name="x" * 256)
    assert r.status_code == 500 and "pin name is 256 bytes (max 255 bytes)" in r.text
    r = post("pin/add", three, recursive="false")
    assert r.status_code == 500 and r.json()["Message"] == \
        f"{three} already pinned recursively", r.text  # it said it pinned it, did nothing
    r = post("pin/rm", three, recursive="false")
    assert r.status_code == 500 and "is pinned recursively" in r.json()["Message"], r.text
    assert three in pins()
    r = post("pin/rm", one)
    assert r.status_code == 500, r.text
    assert "not pinned or pinned indirectly" in r.json()["Message"]
    assert post("pin/add", one, recursive="false").status_code == 200
    assert post("pin/rm", one, recursive="false").status_code == 200
    assert post("pin/ls", type="direct").json()["Keys"] == {}


def test_pin_update_refuses_before_fetching_new(daemon: MakeDaemon) -> None:
    """boxo's Update checks OLD and NEW before it fetches NEW: an OLD that is no recursive
    pin is refused at once (it fetched all of NEW first, then said so), and OLD the same
    as NEW changes nothing, fetched or not. NEW here is held by no one: a fetch of it waits
    out its timeout and fails with another message."""
    d = daemon(name="a").start()
    rpc = f"{d.rpc_url}/api/v0"
    missing = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"  # sha256 of "a"
    r = httpx.post(f"{rpc}/add?pin=false", files={"file": ("f", b"old\n")}, timeout=60)
    old = str(r.json()["Hash"])
    r = httpx.post(f"{rpc}/pin/update", params=[("arg", old), ("arg", missing),
                                                ("timeout", "2")], timeout=60)
    assert r.status_code == 500 and r.json()["Message"] == \
        "'from' cid was not recursively pinned already", r.text
    r = httpx.post(f"{rpc}/pin/update", params=[("arg", missing), ("arg", missing),
                                                ("timeout", "2")], timeout=60)
    assert r.status_code == 200, r.text
