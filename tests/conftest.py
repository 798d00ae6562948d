from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from helpers import (
    Daemon,
    HeliaPeer,
    JsIpfs,
    ensure_helia_installed,
    ensure_jsipfs_installed,
    helia_peer,
)

if TYPE_CHECKING:
    from kubo.harness import KuboPeer


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short folder: unix socket paths must stay under 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="ikn-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def daemon(short_tmp: Path) -> Iterator[Callable[..., Daemon]]:
    """Factory: daemon(role="worker", name="a") -> Daemon (not started); all killed at the end."""
    made: list[Daemon] = []

    def make(role: str = "worker", name: str = "node") -> Daemon:
        d = Daemon(short_tmp, role=role, name=name)
        made.append(d)
        return d

    yield make
    for d in made:
        d.kill()


@pytest.fixture(scope="session")
def helia_installed() -> None:
    ensure_helia_installed()


@pytest.fixture
def helia(helia_installed: None, short_tmp: Path) -> Iterator[HeliaPeer]:
    with helia_peer(short_tmp / "helia.log") as peer:
        yield peer


@pytest.fixture(scope="session")
def jsipfs_installed() -> None:
    ensure_jsipfs_installed()


@pytest.fixture
def jsipfs(jsipfs_installed: None, short_tmp: Path) -> Iterator[JsIpfs]:
    node = JsIpfs(short_tmp).start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="session")
def kubo_installed() -> None:
    """The Go Kubo core's venv (tests/kubo/.venv), made once; skip only if it cannot be."""
    from kubo.harness import installable

    reason = installable()
    if reason is not None:
        pytest.skip(f"Go Kubo core unavailable: {reason}")


@pytest.fixture
def kubo(kubo_installed: None, short_tmp: Path) -> Iterator[Callable[..., KuboPeer]]:
    """Factory: kubo(name="kubo", quic=False, security=("noise", "tls"), public=False)
    -> a started KuboPeer on loopback; all stopped at the end."""
    from kubo.harness import KuboPeer

    made: list[KuboPeer] = []

    def make(name: str = "kubo", **options: Any) -> KuboPeer:
        peer = KuboPeer(short_tmp / name, **options)
        made.append(peer)
        return peer.start()

    yield make
    for peer in made:
        peer.stop()
