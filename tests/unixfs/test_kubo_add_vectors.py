"""`add` output against CIDs and lines from Kubo's own test suite (test/sharness/t0040), where
no JS importer can serve as the reference (--hash, -t on Kubo's leaves, stdin, --cid-base)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from helpers import BIN

from ipfs_kit_node.unixfs.params import ImportParams


def add(cwd: Path, *args: str, stdin: bytes | None = None) -> list[str]:
    out = subprocess.run([str(BIN), "add", "-n", *args], cwd=cwd, input=stdin,
                         capture_output=True, timeout=60, check=True)
    return out.stdout.decode().splitlines()


@pytest.fixture
def planets(tmp_path: Path) -> Path:
    (tmp_path / "planets").mkdir()
    (tmp_path / "planets" / "mars.txt").write_text("Hello Mars!\n")
    (tmp_path / "planets" / "venus.txt").write_text("Hello Venus!\n")
    (tmp_path / "hello.txt").write_text("Hello Worlds!\n")
    return tmp_path


# (flags, mars, venus, planets) from t0040's add_directory runs.
PLANETS = [
    ("", "QmPrrHqJzto9m7SyiRzarwkqPcCSsKR2EB1AyqJfe8L8tN",
     "QmU5kp3BH3B8tnWUU2Pikdb2maksBNkb92FHRr56hyghh4",
     "QmWSgS32xQEcXMeqd3YPJLrNBLSdsfYCep2U7CFkyrjXwY"),
    ("--raw-leaves", "bafkreibmlvvgdyihetgocpof6xk64kjjzdeq2e4c7hqs3krdheosk4tgj4",
     "bafkreihfsphazrk2ilejpekyltjeh5k4yvwgjuwg26ueafohqioeo3sdca",
     "QmfWfQfKCY5Ukv9peBbxM5vqWM9BzmqUSXvdCgjT2wsiBT"),
    ("--cid-version=1", "bafkreibmlvvgdyihetgocpof6xk64kjjzdeq2e4c7hqs3krdheosk4tgj4",
     "bafkreihfsphazrk2ilejpekyltjeh5k4yvwgjuwg26ueafohqioeo3sdca",
     "bafybeih7e5dmkyk25up5vxug4q3hrg2fxbzf23dfrac2fns5h7z4aa7ioi"),
    ("--cid-version=1 --raw-leaves=false",
     "bafybeiawta2ntdmsy24aro35w3homzl4ak7svr3si7l7gesvq4erglyye4",
     "bafybeicvkvhs2fr75ynebtdjqpgm4g2fc63abqbmysupwpmcjl4gx7mzrm",
     "bafybeif5tuep5ap2d7zyhbktucey75aoacxufgt6i3v4gebmixyipnyp7y"),
    ("--hash=blake2b-256", "bafk2bzaceaqcxw46uzkyd2jmczoogof6pnkqt4dpiv3pwkunsv4g5rkkmecie",
     "bafk2bzacebxnke2fb5mgzxyjuuavvcfht4fd3gvn4klkujz6k72wboynhuvfw",
     "bafykbzaceaptbcs7ik5mdfpot3b4ackvxlwh7loc5jcrtkayf64ukl7zyk46e"),
]


@pytest.mark.parametrize(("flags", "mars", "venus", "root"), PLANETS)
def test_planets_as_kubo(planets: Path, flags: str, mars: str, venus: str, root: str) -> None:
    assert add(planets, "-r", *flags.split(), "planets") == [
        f"added {mars} planets/mars.txt", f"added {venus} planets/venus.txt",
        f"added {root} planets"]


def test_trickle_stdin_and_cid_base_as_kubo(planets: Path) -> None:
    assert add(planets, "-t", "hello.txt") == [
        "added QmUkUQgxXeggyaD5Ckv8ZqfW8wHBX6cYyeiyqvVZYzq5Bi hello.txt"]
    assert add(planets, "--raw-leaves", "hello.txt")[0].endswith(" hello.txt")  # not eaten
    named = "QmdFyxZXsFiP4csgfM5uPu99AvFiKH62CSPDw5TP92nr7w"
    assert add(planets, "--stdin-name", "file.txt", stdin=b"IPFS\n") == [
        f"added {named} file.txt"]
    wrapped = add(planets, "-w", "--stdin-name", "file.txt", stdin=b"IPFS\n")
    assert wrapped[0] == f"added {named} file.txt" and len(wrapped) == 2
    anon = "QmZDhWpi8NvKrekaYYhxKCdNVGWsFFe1CREnAjP1QbPaB3"
    assert add(planets, stdin=b"Hello Neptune!\nHello Pluton!") == [f"added {anon} {anon}"]
    (planets / "b.txt").write_text("base32 test\n")
    b32 = "bafybeibyosqxljd2eptb4ebbtvk7pb4aoxzqa6ttdsflty6rsslz5y6i34"
    assert add(planets, "--cid-base=base32", "b.txt") == [f"added {b32} b.txt"]
    assert add(planets, "--cid-base=base32", "--upgrade-cidv0-in-output=false", "b.txt")[0] \
        .startswith("added Qm")
    assert add(planets, "-q", "-r", "planets") == [line.split()[1] for line in
                                                   add(planets, "-r", "planets")]
    assert add(planets, "--silent", "-r", "planets") == []


def test_hidden_files_and_kubo_option_rules(planets: Path) -> None:
    (planets / "planets" / ".secret").write_text("x")
    assert len(add(planets, "-r", "planets")) == 3  # dot-files skipped, as Kubo
    lines = add(planets, "-r", "-H", "planets")
    assert "planets/.secret" in {line.split()[2] for line in lines}
    assert lines[-1] != add(planets, "-r", "planets")[-1]
    # An explicitly named dot-file is added (Kubo's t0040 too).
    assert add(planets, "planets/.secret")[0].endswith(" .secret")
    with pytest.raises(ValueError, match="CIDv0 only supports sha2-256"):
        ImportParams.kubo(cid_version=0, hash="blake3")
    with pytest.raises(ValueError, match="raw-leaves"):
        ImportParams.kubo(raw_leaves=True, preserve_mode=True)
    assert not ImportParams.kubo(cid_version=1, preserve_mtime=True).raw_leaves
    assert ImportParams.kubo(hash="blake3").cid_version == 1
    assert ImportParams.kubo(cid_version=0, raw_leaves=True).raw_leaves  # allowed, as Kubo
    inline = add(planets, "--inline", "hello.txt")[0].split()[1]
    assert inline.startswith("bafyaa")  # an identity CID: the block is in it
    bad = subprocess.run([str(BIN), "add", "-n", "--chunker", "size-x", "hello.txt"],
                         cwd=planets, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "chunker" in bad.stderr
