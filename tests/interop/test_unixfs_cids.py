"""Root CIDs identical to Helia's ipfs-unixfs-importer (npm), computed by the test itself."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from helpers import js_import

from ipfs_kit_node.unixfs.importer import PROFILES, Added, ImportParams, import_path

pytestmark = pytest.mark.interop
KIB = 1024
MIB = 1024 * KIB


@pytest.fixture(scope="module")
def random_source(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return os.urandom(64 * MIB + 1)


def ours(path: Path, params: ImportParams) -> str:
    last = [i for i in import_path(path, params) if isinstance(i, Added)][-1]
    return str(last.entry.cid)


def check(tmp_path: Path, data: bytes, params: ImportParams, js_options: dict[str, Any]
          ) -> None:
    f = tmp_path / f"f{len(data)}"
    f.write_bytes(data)
    expected = js_import(f, js_options)[-1]["cid"]
    assert ours(f, params) == expected, f"size {len(data)}"
    f.unlink()


V0, V1 = PROFILES["unixfs-v0-2015"], PROFILES["unixfs-v1-2025"]
C0 = V0.chunk_size


@pytest.mark.parametrize("size", [0, 1, C0 - 1, C0, C0 + 1, 174 * C0, 174 * C0 + 1, 175 * C0,
                                  64 * MIB])
def test_kubo_default_profile(tmp_path: Path, random_source: bytes, size: int) -> None:
    check(tmp_path, random_source[:size], V0, {"profile": "unixfs-v0-2015"})


C1 = V1.chunk_size


@pytest.mark.parametrize("size", [0, 1, C1 - 1, C1, C1 + 1, 64 * MIB])
def test_v1_2025_profile(tmp_path: Path, random_source: bytes, size: int) -> None:
    check(tmp_path, random_source[:size], V1, {"profile": "unixfs-v1-2025"})


# The v1 profile's 1024-link layout at its edges, with a small chunker to keep files small.
SMALL_V1 = ImportParams(cid_version=1, raw_leaves=True, chunk_size=KIB, max_links=1024)


@pytest.mark.parametrize("chunks", [1024, 1025, 2048 + 1])
def test_v1_layout_edges(tmp_path: Path, random_source: bytes, chunks: int) -> None:
    check(tmp_path, random_source[:chunks * KIB], SMALL_V1,
          {"cidVersion": 1, "rawLeaves": True, "chunkSize": KIB, "maxChildrenPerNode": 1024})


@pytest.mark.parametrize(("version", "raw"), [(0, False), (1, True), (1, False)])
def test_three_level_tree(tmp_path: Path, random_source: bytes, version: int, raw: bool) -> None:
    params = ImportParams(cid_version=version, raw_leaves=raw, chunk_size=KIB, max_links=11)
    size = (11 * 11 + 3) * KIB + 7  # 125 leaves: two full levels and a wrapped remainder
    check(tmp_path, random_source[:size], params,
          {"cidVersion": version, "rawLeaves": raw, "chunkSize": KIB, "maxChildrenPerNode": 11})


@pytest.mark.parametrize("profile", ["unixfs-v0-2015", "unixfs-v1-2025"])
def test_directory_of_mixed_files(tmp_path: Path, random_source: bytes, profile: str) -> None:
    root = tmp_path / "tree"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "empty-dir").mkdir()
    (root / "a.txt").write_bytes(b"hello\n")
    (root / "empty.bin").write_bytes(b"")
    (root / "big.bin").write_bytes(random_source[:3 * MIB + 5])
    (root / "sub" / "b.txt").write_bytes(random_source[:1000])
    (root / "sub" / "deeper" / "c").write_bytes(random_source[:C0 + 1])
    (root / "Zed").write_bytes(b"capital letters sort first")
    (root / "é-unicode").write_bytes(b"utf-8 names")
    expected = {e["path"]: e["cid"] for e in js_import(root, {"profile": profile})}
    got = {a.name: str(a.entry.cid) for a in import_path(root, PROFILES[profile])
           if isinstance(a, Added)}
    # The js importer does not report empty folders on their own (they are in the tree).
    assert {path: got[path] for path in expected} == expected
    assert "tree" in expected
    if profile == "unixfs-v0-2015":  # Kubo's well-known empty directory
        assert got["tree/empty-dir"] == "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"
