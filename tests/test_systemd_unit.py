"""The shipped unit: hardened, notify-typed, and accepted by systemd-analyze where it exists."""

from __future__ import annotations

import configparser
import json
import os
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


ROLES = ("master", "worker", "leecher")


def dropin_env(role: str) -> dict[str, str]:
    """The Environment= lines of the role's shipped drop-in (systemd/ipfs-kit-node@ROLE...)."""
    path = UNIT.parent / f"ipfs-kit-node@{role}.service.d" / "ports.conf"
    env = {}
    for line in path.read_text().splitlines():
        if line.startswith("Environment="):
            key, _, value = line.removeprefix("Environment=").partition("=")
            env[key] = value
    return env


def test_each_role_has_its_own_ports() -> None:
    """Master, worker and leecher enabled on one host (beside a Kubo on 4001/5001/8080) must
    not fight over ports: the drop-ins give each role its own, and the config accepts them."""
    seen: dict[str, set[str]] = {}
    for role in ROLES:
        done = subprocess.run([str(BIN), "config", "show", "--role", role, "--enc", "json"],
                              capture_output=True, text=True, timeout=60,
                              env={**os.environ, **dropin_env(role)})
        assert done.returncode == 0, done.stderr
        config = json.loads(done.stdout)
        addrs = [*config["node"]["listen"], *config["api"]["listen"], *config["gateway"]["listen"]]
        assert len(addrs) == 4, addrs
        seen[role] = {"/".join(a.split("/")[3:5]) for a in addrs}  # tcp/PORT, udp/PORT
    kubo = {"tcp/4001", "udp/4001", "tcp/5001", "tcp/8080"}
    for role in ROLES:
        assert not seen[role] & kubo, role
        for other in ROLES:
            assert other == role or not seen[role] & seen[other], (role, other)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify_with_dropins(tmp_path: Path) -> None:
    text = UNIT.read_text().replace("/opt/ipfs-kit-node/bin/ipfs-kit-node", str(BIN))
    (tmp_path / UNIT.name).write_text(text)
    for role in ROLES:
        name = f"ipfs-kit-node@{role}.service"
        shutil.copytree(UNIT.parent / f"{name}.d", tmp_path / f"{name}.d")
        out = subprocess.run(["systemd-analyze", "verify", f"./{name}"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        problems = [line for line in out.stderr.splitlines() if "ipfs-kit-node@" in line]
        assert not problems, problems
