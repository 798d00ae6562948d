"""The shipped unit: hardened, notify-typed, and accepted by systemd-analyze where it exists."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import BIN

UNIT = Path(__file__).parent.parent / "systemd" / "ipfs-kit-node@.service"


def directives() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_unit_has_the_required_settings() -> None:
    d = directives()
    expected = {
        "Type": "notify", "Restart": "on-failure", "DynamicUser": "yes",
        "ProtectSystem": "strict", "NoNewPrivileges": "yes", "PrivateTmp": "yes",
        "ProtectHome": "yes", "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6 AF_NETLINK",
        "CapabilityBoundingSet": "",
    }
    for key, value in expected.items():
        assert d.get(key) == [value], key
    assert "@system-service" in d["SystemCallFilter"]
    assert d["WatchdogSec"] and d["LimitNOFILE"] and d["StateDirectory"]
    assert "--role %i" in d["ExecStart"][0]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    # verify insists the ExecStart binary exists: point it at the installed console script.
    text = UNIT.read_text().replace("/opt/ipfs-kit-node/bin/ipfs-kit-node", str(BIN))
    (tmp_path / UNIT.name).write_text(text)
    out = subprocess.run(["systemd-analyze", "verify", "./ipfs-kit-node@worker.service"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    problems = [line for line in out.stderr.splitlines() if "ipfs-kit-node@" in line]
    assert not problems, problems
    configparser.ConfigParser(strict=False, interpolation=None).read_string(text)
