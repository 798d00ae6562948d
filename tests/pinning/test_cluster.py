"""The IPFS Cluster driver against the Cluster TEST DOUBLE (tests/doubles/cluster.py), which
follows Cluster's documented wire format; no real Cluster can be installed here."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from doubles.cluster import ClusterDouble

from ipfs_kit_node.errors import (
    PinningError,
    RemoteProtocolError,
    RemoteRefusedError,
    RemoteUnavailableError,
)
from ipfs_kit_node.pinning.base import Credentials
from ipfs_kit_node.pinning.cluster import ClusterClient, PinOptions

CID = "bafkreie5nqv6kd3qnfjupgvz34woh3oksc3iau6abmyajn7qvtf6d2ho34"
CID2 = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"


@pytest.fixture
def cluster() -> Iterator[ClusterDouble]:
    double = ClusterDouble(peers=3, ipfs_addresses=[[f"/ip4/127.0.0.1/tcp/{4000 + i}/p2p/x"]
                                                    for i in range(3)]).start()
    yield double
    double.stop()


async def test_pin_with_options_status_and_listing(cluster: ClusterDouble) -> None:
    client = ClusterClient(cluster.api, timeout=10)
    assert (await client.id())["id"] == cluster.peer_ids[0]
    assert await client.version() == "1.1.6"
    assert [p["id"] async for p in client.peers()] == cluster.peer_ids
    assert [p async for p in client.pins()] == []  # 204, no body
    pin = await client.pin(CID, PinOptions(
        replication_min=1, replication_max=2, name="results", metadata={"task": "t1"},
        origins=("/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWus",)))
    assert pin["cid"] == CID and pin["replication_factor_max"] == 2
    _, _, query = cluster.requests[-1]
    assert query["replication-min"] == ["1"] and query["meta-task"] == ["t1"]
    assert query["origins"] == ["/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWus"]
    status = await client.status(CID)
    assert status.pinned_on() == 2 and len(status.peer_map) == 3
    assert status.holders() == ["/ip4/127.0.0.1/tcp/4000/p2p/x", "/ip4/127.0.0.1/tcp/4001/p2p/x"]
    await client.pin(CID2)
    listed = {p.cid: p async for p in client.pins()}
    assert set(listed) == {CID, CID2}
    assert [p.cid async for p in client.pins(filter="pinned,queued")] == [CID, CID2]
    assert (await client.allocation(CID))["allocations"] == cluster.peer_ids[:2]
    assert len([a async for a in client.allocations()]) == 2
    assert (await client.recover(CID)).cid == CID
    assert (await client.unpin(CID))["cid"] == CID
    with pytest.raises(RemoteRefusedError, match="404"):
        await client.unpin(CID)
    with pytest.raises(ValueError, match="unknown status filter"):
        [p async for p in client.pins(filter="bogus")]


@pytest.mark.parametrize(("fault", "error", "message"), [
    ("500", PinningError, "ipfs daemon unreachable"),
    ("truncate", RemoteProtocolError, "broke off|closed the connection|truncated"),
    ("bad-json", RemoteProtocolError, "malformed JSON"),
    ("stream-error", RemoteProtocolError, "failed mid-stream: ipfs daemon unreachable"),
])
async def test_bad_answers_become_clear_errors(cluster: ClusterDouble, fault: str,
                                               error: type[Exception], message: str) -> None:
    client = ClusterClient(cluster.api, timeout=10)
    await client.pin(CID)
    await client.pin(CID2)
    cluster.fail(fault)
    with pytest.raises(error, match=message):
        [p async for p in client.pins()]
    assert len([p async for p in client.pins()]) == 2  # the next answer is fine again


async def test_single_object_faults(cluster: ClusterDouble) -> None:
    client = ClusterClient(cluster.api, timeout=10)
    cluster.fail("bad-json")
    with pytest.raises(RemoteProtocolError, match="malformed JSON"):
        await client.pin(CID)
    cluster.stop()
    with pytest.raises(RemoteUnavailableError, match="unreachable"):
        await client.status(CID)


async def test_basic_and_bearer_auth() -> None:
    double = ClusterDouble(basic="ikn:pw", token="tok").start()
    try:
        with pytest.raises(RemoteRefusedError, match="credentials"):
            await ClusterClient(double.api, timeout=5).id()
        basic = ClusterClient(double.api, credentials=Credentials("basic", "ikn:pw"))
        assert (await basic.id())["id"]
        token = await basic.token()
        bearer = ClusterClient(double.api, credentials=Credentials("bearer", token))
        assert await bearer.version() == "1.1.6"
    finally:
        double.stop()
