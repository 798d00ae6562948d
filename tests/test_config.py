"""Layered configuration: role defaults, precedence, and errors that name file, key and reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from ipfs_kit_node.config import (
    NodeConfig,
    env_layer,
    load_config,
    parse_duration,
    parse_size,
    parse_table,
    read_toml,
)
from ipfs_kit_node.errors import ConfigError

PEER = "12D3KooWFTv34iM3WJK3zhZFNARHfLkTpG6J6EG7dneg6F9hRUcY"


def load(role: str, **kw: object) -> NodeConfig:
    kw.setdefault("env", {})
    return load_config(role, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("role", "routing", "max_size", "watermark", "period", "low", "high", "grace"),
    [
        ("master", "dhtserver", 10**12, 0.80, 12 * 3600, None, None, None),
        ("worker", "dhtclient", 100 * 10**9, 0.90, 3600, 100, 400, 20),
        ("leecher", "dhtclient", 10 * 10**9, 0.95, 1800, 20, 100, 10),
    ],
)
def test_role_defaults(role, routing, max_size, watermark, period, low, high, grace) -> None:
    c = load(role)
    assert c.role == role
    assert c.routing.mode == routing
    assert c.storage.max_size == max_size
    assert c.storage.gc_watermark == pytest.approx(watermark)
    assert c.storage.gc_period == period
    assert (c.connmgr.low_water, c.connmgr.high_water, c.connmgr.grace_period) == (low, high, grace)


def test_precedence_role_repo_file_env_flags(tmp_path: Path) -> None:
    repo_cfg = tmp_path / "repo.toml"
    repo_cfg.write_text('[storage]\nmax_size = "5GB"\ngc_period = "2h"\n[node]\ncluster = "r"\n')
    user_cfg = tmp_path / "user.toml"
    user_cfg.write_text('[storage]\nmax_size = "6GB"\n[node]\ncluster = "u"\n')
    env = {"IPFS_KIT_NODE_CLUSTER": "e", "IPFS_KIT_PATH": "/ignored"}
    flags = parse_table("command line", {"node": {"listen": ["/ip4/127.0.0.1/tcp/1234"]}})

    c = load("worker", repo_config=repo_cfg, config_file=user_cfg, env=env, flags=flags)
    assert c.storage.gc_period == 7200  # repo file over role file
    assert c.storage.max_size == 6 * 10**9  # --config over repo file
    assert c.node.cluster == "e"  # env over --config
    assert c.node.listen == ("/ip4/127.0.0.1/tcp/1234",)  # flags over all
    assert c.storage.gc_watermark == pytest.approx(0.9)  # role file over built-in
    assert c.routing.mdns is True  # built-in


def test_show_round_trips(tmp_path: Path) -> None:
    c = load("leecher")
    f = tmp_path / "shown.toml"
    text = c.to_toml()
    f.write_text("\n".join(line for line in text.splitlines() if not line.startswith("role")))
    again = load("master", config_file=f)  # every value of the shown config parses back
    assert again.storage == c.storage and again.connmgr == c.connmgr


@pytest.mark.parametrize(
    ("toml", "key", "reason"),
    [
        ("[storage]\nmax_sise = 1\n", "[storage] max_sise", "unknown key"),
        ("[storge]\n", "[storge]", "unknown section"),
        ('[storage]\nmax_size = "-5GB"\n', "[storage] max_size", "must not be negative"),
        ("[storage]\nmax_size = -1\n", "[storage] max_size", "must not be negative"),
        ('[storage]\nmax_size = "lots"\n', "[storage] max_size", "expected a size"),
        ('[storage]\ngc_watermark = "120%"\n', "[storage] gc_watermark", "at most 100%"),
        ('[storage]\ngc_period = "soon"\n', "[storage] gc_period", "expected a duration"),
        ('[node]\nlisten = ["/ip4/999.1.1.1/tcp/1"]\n', "[node] listen", "malformed multiaddr"),
        ('[node]\nbootstrap = ["not-a-multiaddr"]\n', "[node] bootstrap", "malformed multiaddr"),
        ('[routing]\nmode = "dht"\n', "[routing] mode", "expected one of"),
        ('[connmgr]\nlow_water = "x"\n', "[connmgr] low_water", "whole number"),
        ("[storage\n", "(syntax)", ""),
        ('role = "master"\n', "role", "--role"),
    ],
)
def test_bad_file_names_file_key_reason(tmp_path: Path, toml: str, key: str, reason: str) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(toml)
    with pytest.raises(ConfigError) as err:
        load("worker", config_file=f)
    assert err.value.source == str(f)
    assert err.value.key == key
    assert reason in err.value.reason
    assert str(f) in str(err.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read it"):
        read_toml(tmp_path / "nope.toml")


def test_env_errors_name_the_variable() -> None:
    with pytest.raises(ConfigError) as err:
        env_layer({"IPFS_KIT_STORAGE_MAX_SIZE": "-1"})
    assert err.value.key == "IPFS_KIT_STORAGE_MAX_SIZE" and err.value.source == "environment"
    with pytest.raises(ConfigError, match="unknown variable"):
        env_layer({"IPFS_KIT_NOPE": "1"})
    with pytest.raises(ConfigError, match="unknown key"):
        env_layer({"IPFS_KIT_STORAGE_NOPE": "1"})


def test_env_values_are_parsed() -> None:
    layer = env_layer({
        "IPFS_KIT_NODE_BOOTSTRAP": f"/ip4/127.0.0.1/tcp/1/p2p/{PEER},/ip4/127.0.0.1/tcp/2",
        "IPFS_KIT_ROUTING_MDNS": "false",
        "IPFS_KIT_CONNMGR_GRACE_PERIOD": "1m30s",
    })
    assert len(layer["node"]["bootstrap"]) == 2
    assert layer["routing"]["mdns"] is False
    assert layer["connmgr"]["grace_period"] == 90


def test_low_water_above_high_water(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text("[connmgr]\nlow_water = 500\n")  # worker's high_water is 400
    with pytest.raises(ConfigError, match="must not exceed high_water"):
        load("worker", config_file=f)


def test_unknown_role() -> None:
    with pytest.raises(ConfigError, match="expected one of master, worker, leecher"):
        load("boss")


@pytest.mark.parametrize(
    ("text", "value"),
    [("1TB", 10**12), ("100GB", 10**11), ("10GiB", 10 * 2**30), ("512", 512), (4096, 4096),
     ("1.5MB", 1_500_000)],
)
def test_sizes(text: object, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize(
    ("text", "value"), [("12h", 43200), ("30m", 1800), ("1h30m", 5400), ("250ms", 0.25), (20, 20)]
)
def test_durations(text: object, value: float) -> None:
    assert parse_duration(text) == value
