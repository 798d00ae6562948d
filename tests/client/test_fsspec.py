"""pandas and pyarrow through ``ipfs-kit://`` (the entry point fsspec finds): range reads,
counting the bytes fetched; writes add and give the CID."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
import pytest
from helpers import Daemon

from ipfs_kit_node import Client

MakeDaemon = Callable[..., Daemon]


def test_parquet_one_column_reads_part_of_the_file(daemon: MakeDaemon, short_tmp: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    d = daemon().start()
    monkeypatch.setenv("IPFS_KIT_PATH", str(d.repo))
    rng = np.random.default_rng(7)
    df = pd.DataFrame({c: rng.random(1_300_000) for c in "abcde"})  # ~50 MB uncompressed
    local = short_tmp / "sales.parquet"
    df.to_parquet(local, compression=None, row_group_size=300_000)
    size = local.stat().st_size
    assert size > 50_000_000
    cid = Client().add(local)

    fs = fsspec.filesystem("ipfs-kit")
    fs.bytes_fetched = 0
    one = pd.read_parquet(f"ipfs-kit://{cid}", columns=["c"])
    assert (one["c"].to_numpy() == df["c"].to_numpy()).all()
    assert fs.bytes_fetched < size * 0.5, (fs.bytes_fetched, size)  # footer + one column
    fs.bytes_fetched = 0
    assert pd.read_parquet(f"ipfs-kit://{cid}").equals(df)
    assert fs.bytes_fetched >= size


def test_filesystem_verbs(daemon: MakeDaemon, short_tmp: Path) -> None:
    d = daemon().start()
    fs = fsspec.filesystem("ipfs-kit", repo=str(d.repo))
    folder = short_tmp / "t"
    (folder / "a").mkdir(parents=True)
    (folder / "a" / "b.csv").write_text("x,y\n1,2\n")
    (folder / "top.txt").write_text("top")
    fs.put(str(folder / "top.txt"), "ipfs-kit://top.txt")
    assert fs.cat("top.txt") == b"top" and fs.info("top.txt")["cid"].startswith("Qm")
    root = Client(repo=d.repo).add(folder, recursive=True)
    assert fs.info(root)["type"] == "directory"
    assert sorted(fs.ls(root, detail=False)) == [f"{root}/a", f"{root}/top.txt"]
    assert fs.find(root) == [f"{root}/a/b.csv", f"{root}/top.txt"]
    assert [w[0] for w in fs.walk(root)] == [root, f"{root}/a"]
    with fsspec.open(f"ipfs-kit://{root}/a/b.csv", repo=str(d.repo)) as f:
        assert pd.read_csv(f)["y"].tolist() == [2]
    assert fs.cat_file(f"{root}/top.txt", 1, 3) == b"op"
    fs.pipe("ipfs-kit://new.bin", b"payload")
    assert fs.cat(f"ipfs-kit://{fs.last_cid}") == b"payload"
    fs.get(f"{root}/a/b.csv", str(short_tmp / "copy.csv"))
    assert (short_tmp / "copy.csv").read_text() == "x,y\n1,2\n"
    with pytest.raises(FileNotFoundError):
        fs.info(f"{root}/missing")
