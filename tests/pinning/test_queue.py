"""The pin queue's own logic with an in-memory target (a test double: the real targets are
exercised against js-ipfs and the Cluster double in test_pin_queue_daemon.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from ipfs_kit_node.errors import PinningError, RemoteRefusedError, RemoteUnavailableError
from ipfs_kit_node.pinning.queue import Intent, PinQueue, backoff

CID = "bafkreie5nqv6kd3qnfjupgvz34woh3oksc3iau6abmyajn7qvtf6d2ho34"


class FlakyTarget:
    """Fails with the queued errors first, then succeeds; counts what it applied."""

    name = "kubo"

    def __init__(self, errors: list[Exception] | None = None) -> None:
        self.errors = errors or []
        self.applied: list[tuple[str, str]] = []

    async def pin(self, cid: str, name: str) -> None:
        if self.errors:
            raise self.errors.pop(0)
        self.applied.append(("pin", cid))

    async def unpin(self, cid: str) -> None:
        self.applied.append(("unpin", cid))


def test_backoff_grows_is_capped_and_jittered() -> None:
    assert [backoff(n, 60, lambda: 0.5) for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert backoff(20, 60, lambda: 0.5) == 60
    assert backoff(3, 60, lambda: 0.0) == 2 and backoff(3, 60, lambda: 1.0) == 6


async def settled(intent: Intent, timeout: float = 10) -> None:
    with trio.fail_after(timeout):
        while intent.state == "queued":
            await trio.sleep(0.02)


async def test_outage_is_waited_out_and_refusals_fail_at_once(tmp_path: Path) -> None:
    target = FlakyTarget([RemoteUnavailableError("down"), RemoteUnavailableError("down"),
                          RemoteRefusedError("bad cid")])
    queue = PinQueue(tmp_path / "queue", {"kubo": target}, max_backoff=0.05)
    async with trio.open_nursery() as nursery:
        await nursery.start(queue.run)
        first = await queue.enqueue("pin", CID, "kubo")
        await settled(first)
        assert first.state == "failed" and first.attempts == 3 and "bad cid" in first.error
        second = await queue.enqueue("pin", CID, "kubo")
        await settled(second)
        assert second.state == "done" and target.applied == [("pin", CID)]
        nursery.cancel_scope.cancel()


async def test_other_errors_get_max_attempts(tmp_path: Path) -> None:
    target = FlakyTarget([PinningError("500: boom")] * 5)
    queue = PinQueue(tmp_path / "queue", {"kubo": target}, max_backoff=0.01, max_attempts=3)
    async with trio.open_nursery() as nursery:
        await nursery.start(queue.run)
        intent = await queue.enqueue("pin", CID, "kubo")
        await settled(intent)
        assert intent.state == "failed" and intent.attempts == 3
        nursery.cancel_scope.cancel()


async def test_idempotent_superseded_and_durable(tmp_path: Path) -> None:
    queue = PinQueue(tmp_path / "queue", {"kubo": FlakyTarget()})
    await trio.to_thread.run_sync(queue.open)
    a = await queue.enqueue("pin", CID, "kubo")
    assert await queue.enqueue("pin", CID, "kubo") is a  # same intent, not a second one
    b = await queue.enqueue("unpin", CID, "kubo")
    assert a.state == "superseded" and b.state == "queued"
    with pytest.raises(PinningError, match="no cluster is configured"):
        await queue.enqueue("pin", CID, "cluster")
    queue.close()
    with open(tmp_path / "queue", "ab") as f:
        f.write(b"\x86\xa2op")  # a record torn by kill -9
    again = PinQueue(tmp_path / "queue", {"kubo": FlakyTarget()})
    await trio.to_thread.run_sync(again.open)
    assert [(i.action, i.state) for i in again.status(CID)] == [("pin", "superseded"),
                                                               ("unpin", "queued")]
    again.close()


def test_secrets_from_env_file_and_systemd_credentials(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from ipfs_kit_node.errors import ConfigError
    from ipfs_kit_node.pinning.base import load_credentials

    (tmp_path / "kubo.secret").write_text("bearer:tok\n")
    monkeypatch.setenv("SECRET", "basic:u:p")
    assert load_credentials("env:SECRET", "k") is not None
    assert load_credentials(f"file:{tmp_path / 'kubo.secret'}", "k").secret == "tok"  # type: ignore[union-attr]
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert load_credentials("credential:kubo.secret", "k").scheme == "bearer"  # type: ignore[union-attr]
    for spec, reason in [("env:NOPE", "not set"), ("file:/nonexistent", "cannot read"),
                         ("credential:../x", "no systemd credential"), ("ssh:x", "expected")]:
        with pytest.raises(ConfigError, match=reason):
            load_credentials(spec, "k")
    monkeypatch.setenv("SECRET", "u:p")
    with pytest.raises(ConfigError, match="basic:USER:PASSWORD") as caught:
        load_credentials("env:SECRET", "k")
    assert "u:p" not in str(caught.value)
