"""Data scientists' path: pandas reads ``ipfs://CID/...`` through ipfsspec (PyPI), pointed at
our gateway with IPFS_GATEWAY. ipfsspec resolves paths with ``?format=car&dag-scope=block``,
relies on X-Ipfs-Roots and verifies every block it gets."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import Daemon

pd = pytest.importorskip("pandas")
ipfsspec = pytest.importorskip("ipfsspec")
fsspec = pytest.importorskip("fsspec")


@pytest.fixture
def gateway_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    from ipfsspec.async_ipfs import get_gateway

    def point(url: str) -> None:
        monkeypatch.setenv("IPFS_GATEWAY", url)
        get_gateway.cache_clear()  # it reads the variable once and caches the answer

    yield point
    get_gateway.cache_clear()


def test_pandas_reads_csv_and_parquet(daemon: Callable[..., Daemon], short_tmp: Path,
                                      gateway_env: Callable[[str], None]) -> None:
    d = daemon().start()
    folder = short_tmp / "tables"
    folder.mkdir()
    frame = pd.DataFrame({"city": ["Lyon", "Oslo", "Quito"], "people": [522_000, 709_000,
                                                                         2_800_000]})
    frame.to_csv(folder / "cities.csv", index=False)
    frame.to_parquet(folder / "cities.parquet")
    big = pd.DataFrame({"n": range(200_000), "sq": [i * i for i in range(200_000)]})
    big.to_parquet(folder / "big.parquet")  # several blocks: the file DAG is walked
    root = d.cli("add", "-r", "-Q", "--cid-version", "1", str(folder)).stdout.strip()
    gateway_env(d.gateway_url)

    assert pd.read_csv(f"ipfs://{root}/cities.csv").equals(frame)
    assert pd.read_parquet(f"ipfs://{root}/cities.parquet").equals(frame)
    assert pd.read_parquet(f"ipfs://{root}/big.parquet")["sq"].sum() == int(big["sq"].sum())

    fs = fsspec.filesystem("ipfs")
    names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(root, detail=False))
    assert names == ["big.parquet", "cities.csv", "cities.parquet"]
    info = fs.info(f"{root}/cities.csv")
    assert info["type"] == "file" and info["size"] == (folder / "cities.csv").stat().st_size
