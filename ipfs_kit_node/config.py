"""Layered configuration: built-in < role file < repo config < --config < IPFS_KIT_* env < flags.

Every layer is checked on its own, before anything starts, so an error names the exact file
(or variable, or flag), the key and the reason. The effective config is a frozen dataclass.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import multiaddr
import tomli_w

from ._roles import ROLES as ROLES  # in their own module: the CLI's parser needs no config
from .errors import ConfigError

ENV_PREFIX = "IPFS_KIT_"
# Variables with that prefix that are not config keys.
ENV_NOT_CONFIG = frozenset({"IPFS_KIT_PATH"})

Parser = Callable[[Any], Any]


class _Invalid(ValueError):
    """A value a parser refused; the loader adds where it came from."""


# -- value parsers: TOML values or environment strings in, normalised values out ---------------

_SIZE_UNITS = {
    "": 1, "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "pb": 10**15,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "pib": 2**50,
}
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_size(value: Any) -> int:
    """Bytes from an int or a string like "100GB" (SI, as Kubo's StorageMax) or "10GiB"."""
    if isinstance(value, bool):
        raise _Invalid(f"expected a size like 100GB, got {value!r}")
    if isinstance(value, int):
        number: float = value
    else:
        m = re.fullmatch(r"\s*(-?[0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", str(value))
        if not m or m.group(2).lower() not in _SIZE_UNITS:
            raise _Invalid(f"expected a size like 100GB or 512MiB, got {value!r}")
        number = float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]
    if number < 0:
        raise _Invalid(f"a size must not be negative, got {value!r}")
    return int(number)


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string like "12h", "30m", "1h30m", "250ms"."""
    if isinstance(value, bool):
        raise _Invalid(f"expected a duration like 30s or 12h, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value).strip().lower()
        parts = re.findall(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)", text)
        if not text or "".join(n + u for n, u in parts) != text.replace(" ", ""):
            raise _Invalid(f"expected a duration like 30s, 30m or 12h, got {value!r}")
        seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
    if seconds < 0 or not math.isfinite(seconds):
        raise _Invalid(f"a duration must be a finite number ≥ 0, got {value!r}")
    return seconds


def positive(parse: Parser) -> Parser:
    def parse_positive(value: Any) -> Any:
        result = parse(value)
        if result <= 0:
            raise _Invalid(f"must be greater than zero, got {value!r}")
        return result

    return parse_positive


PACK_THRESHOLD_MAX = 1 << 20


def parse_pack_threshold(value: Any) -> int:
    """A size up to 1 MiB: compaction copies records a slice at a time, and a pack of
    multi-MiB records would make each slice (and its memory) that much bigger."""
    size = parse_size(value)
    if size > PACK_THRESHOLD_MAX:
        raise _Invalid(f"must be at most 1MiB ({PACK_THRESHOLD_MAX} bytes), got {value!r}; "
                       "bigger blocks are stored one file each anyway")
    return size


def parse_fraction(value: Any) -> float:
    """A fraction in (0, 1] from 0.9 or "90%"."""
    try:
        if isinstance(value, str) and value.strip().endswith("%"):
            frac = float(value.strip()[:-1]) / 100
        elif isinstance(value, bool):
            raise ValueError
        else:
            frac = float(value)
    except ValueError:
        raise _Invalid(
            f"expected a percentage like 90% or a fraction like 0.9, got {value!r}"
        ) from None
    if not 0 < frac <= 1:
        raise _Invalid(f"must be above 0% and at most 100%, got {value!r}")
    return frac


def parse_count(value: Any) -> int:
    """A whole number ≥ 0."""
    try:
        if isinstance(value, bool | float):
            raise ValueError
        n = int(value)
    except ValueError:
        raise _Invalid(f"expected a whole number, got {value!r}") from None
    if n < 0:
        raise _Invalid(f"must not be negative, got {value!r}")
    return n


def parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise _Invalid(f"expected true or false, got {value!r}")


def parse_str(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _Invalid(f"expected a non-empty string, got {value!r}")
    return value


def choice(*options: str) -> Parser:
    def parse(value: Any) -> str:
        if value not in options:
            raise _Invalid(f"expected one of {', '.join(options)}, got {value!r}")
        return str(value)

    return parse


def optional(parse: Parser) -> Parser:
    """Accept "default" (or an empty string) for "leave it to the library"."""

    def parse_optional(value: Any) -> Any:
        if value is None or (isinstance(value, str) and value.strip() in ("", "default")):
            return None
        return parse(value)

    return parse_optional


def _text_list(value: Any, what: str, check: Callable[[str], object]) -> tuple[str, ...]:
    """A TOML array, or comma-separated text from the environment; each item checked."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise _Invalid(f"expected a list of {what}s, got {value!r}")
    out = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        try:
            check(text)
        except Exception as exc:
            raise _Invalid(f"malformed {what} {text!r} ({exc})") from None
        out.append(text)
    return tuple(out)


def parse_multiaddrs(value: Any) -> tuple[str, ...]:
    return _text_list(value, "multiaddr", multiaddr.Multiaddr)


def parse_peer_ids(value: Any) -> tuple[str, ...]:
    from libp2p.peer.id import ID  # py-libp2p loads slowly; only configs with masters pay

    return _text_list(value, "peer ID", ID.from_base58)


def _setting(default: Any, parse: Parser, doc: str) -> Any:
    return field(default=default, metadata={"parse": parse, "doc": doc})


# -- sections ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeSection:
    cluster: str = _setting("default", parse_str, "cluster name shared by masters and workers")
    listen: tuple[str, ...] = _setting(
        ("/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"), parse_multiaddrs,
        "multiaddrs to listen on (TCP and QUIC-v1, as Kubo)"
    )
    bootstrap: tuple[str, ...] = _setting((), parse_multiaddrs, "peers dialled at start")
    masters: tuple[str, ...] = _setting(
        (), parse_peer_ids, "peer IDs of the cluster's masters (never trimmed)"
    )


@dataclass(frozen=True)
class RoutingSection:
    mode: str = _setting(
        "dhtclient", choice("dhtserver", "dhtclient", "none"), "Kademlia mode"
    )
    mdns: bool = _setting(True, parse_bool, "discover peers on the LAN with mDNS")
    reprovide_interval: float = _setting(
        12 * 3600.0, positive(parse_duration), "how often pinned roots are announced again"
    )


@dataclass(frozen=True)
class StorageSection:
    max_size: int = _setting(100 * 10**9, parse_size, "disk budget of the block store")
    gc_watermark: float = _setting(0.9, parse_fraction, "GC starts above this share of max_size")
    gc_period: float = _setting(3600.0, positive(parse_duration), "time between GC runs")
    memory_size: int = _setting(256 * 2**20, parse_size, "byte budget of the memory tier")
    heat_half_life: float = _setting(
        3600.0, positive(parse_duration), "heat halves after this long without access"
    )
    snapshot_period: float = _setting(
        300.0, positive(parse_duration), "time between Parquet snapshots of the index"
    )
    sync: bool = _setting(True, parse_bool, "fsync every block before acknowledging it")
    pack_threshold: int = _setting(
        1024 * 1024, parse_pack_threshold,
        "blocks up to this size are appended to pack files (0: none; at most 1MiB)"
    )


@dataclass(frozen=True)
class ConnMgrSection:
    low_water: int | None = _setting(None, optional(parse_count), "trim down to this many peers")
    high_water: int | None = _setting(None, optional(parse_count), "trim above this many peers")
    grace_period: float | None = _setting(
        None, optional(parse_duration), "new connections are not trimmed for this long"
    )


def _check_name(text: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9_.:-]+", text):
        raise ValueError("letters, digits and _.:- only")


def parse_names(value: Any) -> tuple[str, ...]:
    return _text_list(value, "name", _check_name)


@dataclass(frozen=True)
class TasksSection:
    concurrency: int = _setting(
        os.cpu_count() or 1, positive(parse_count), "tasks a worker runs at once")
    handlers: tuple[str, ...] = _setting(
        ("sha256", "unixfs-stat", "concat", "noop"), parse_names,
        "handler allow-list of a worker (plugins must be named here to run)")
    submitters: tuple[str, ...] = _setting(
        (), parse_peer_ids, "peer IDs a master accepts task submissions from")
    workers: tuple[str, ...] = _setting(
        (), parse_peer_ids, "peer IDs a master gives tasks to (empty: any peer that asks)")
    heartbeat: float = _setting(1.0, positive(parse_duration), "time between status heartbeats")
    heartbeat_timeout: float = _setting(
        10.0, positive(parse_duration), "a worker silent this long loses its tasks")
    lease: float = _setting(
        60.0, positive(parse_duration), "an assignment not renewed this long is reassigned")
    retries: int = _setting(2, parse_count, "times a failed task is run again")
    pin_results: bool = _setting(True, parse_bool, "the master fetches and pins result CIDs")
    snapshot_period: float = _setting(
        30.0, positive(parse_duration), "time between Arrow snapshots of the cluster state")


def parse_api(value: Any) -> str:
    from .endpoints import parse_api_address

    text = parse_str(value)
    try:
        parse_api_address(text)
    except ConfigError as exc:
        raise _Invalid(exc.reason) from None
    return text


def parse_secret_ref(value: Any) -> str:
    text = parse_str(value)
    if not text.startswith(("env:", "file:", "credential:")) or text.endswith(":"):
        raise _Invalid("expected env:VAR, file:PATH or credential:NAME (the secret itself "
                       "never goes in the config)")
    return text


@dataclass(frozen=True)
class PinningSection:
    kubo_api: str | None = _setting(
        None, optional(parse_api), "Kubo RPC API: /ip4/127.0.0.1/tcp/5001 or /unix/PATH")
    kubo_credentials: str | None = _setting(
        None, optional(parse_secret_ref), "env:VAR or file:PATH with basic:USER:PASS or "
        "bearer:TOKEN")
    cluster_api: str | None = _setting(
        None, optional(parse_api), "IPFS Cluster REST API: /ip4/127.0.0.1/tcp/9094")
    cluster_credentials: str | None = _setting(
        None, optional(parse_secret_ref), "env:VAR or file:PATH with basic:USER:PASS or "
        "bearer:TOKEN (a JWT)")
    replication_min: int | None = _setting(
        None, optional(parse_count), "Cluster replication factor min (default: Cluster's)")
    replication_max: int | None = _setting(
        None, optional(parse_count), "Cluster replication factor max (default: Cluster's)")
    timeout: float = _setting(30.0, positive(parse_duration), "timeout of each API call")
    max_backoff: float = _setting(
        300.0, positive(parse_duration), "longest wait between retries of a queued pin")
    max_attempts: int = _setting(
        10, parse_count, "tries of a pin that fails other than by an outage (0: forever)")
    remote_tier: bool = _setting(
        True, parse_bool, "let GC evict local copies of blocks pinned remotely")


def _check_rpc_address(text: str) -> None:
    parts = [p.name for p in multiaddr.Multiaddr(text).protocols()]
    if len(parts) != 2 or parts[0] not in ("ip4", "ip6", "dns", "dns4", "dns6") \
            or parts[1] != "tcp":
        raise ValueError("expected /ip4/HOST/tcp/PORT, /ip6/HOST/tcp/PORT or /dns4/HOST/tcp/PORT")


def parse_tcp_multiaddrs(value: Any) -> tuple[str, ...]:
    return _text_list(value, "TCP multiaddr", _check_rpc_address)


def parse_strings(value: Any) -> tuple[str, ...]:
    return _text_list(value, "string", str)


def parse_authorizations(value: Any) -> dict[str, dict[str, Any]]:
    """Kubo's API.Authorizations: ``[api.authorizations.NAME]`` tables of ``secret``
    (env:VAR, file:PATH or credential:NAME holding bearer:TOKEN or basic:USER:PASS) and
    ``allowed_paths`` (path prefixes, default ["/api/v0"])."""
    if not isinstance(value, Mapping):
        raise _Invalid("expected tables [api.authorizations.NAME] with secret and allowed_paths")
    out: dict[str, dict[str, Any]] = {}
    for name, entry in value.items():
        if not isinstance(entry, Mapping) or set(entry) - {"secret", "allowed_paths"}:
            raise _Invalid(f"{name}: expected secret and allowed_paths only")
        if "secret" not in entry:
            raise _Invalid(f"{name}: secret is required")
        try:
            secret = parse_secret_ref(entry["secret"])
        except _Invalid as exc:
            raise _Invalid(f"{name}.secret: {exc}") from None
        paths = list(parse_strings(entry.get("allowed_paths", ["/api/v0"])))
        if not all(p.startswith("/") for p in paths):
            raise _Invalid(f"{name}.allowed_paths: each must start with /")
        out[str(name)] = {"secret": secret, "allowed_paths": paths}
    return out


@dataclass(frozen=True)
class ApiSection:
    socket: str = _setting("api.sock", parse_str, "control API unix socket, relative to the repo")
    listen: tuple[str, ...] = _setting(
        ("/ip4/127.0.0.1/tcp/5001",), parse_tcp_multiaddrs,
        "Kubo RPC on TCP (multiaddrs; [] turns it off; a non-loopback one needs authorizations)")
    allowed_origins: tuple[str, ...] = _setting(
        (), parse_strings, "browser origins the RPC accepts besides its own (\"*\": any)")
    authorizations: Mapping[str, Mapping[str, Any]] | None = _setting(
        None, optional(parse_authorizations),
        "[api.authorizations.NAME] secret = env:VAR|file:PATH, allowed_paths = [\"/api/v0\"]")


@dataclass(frozen=True)
class GatewaySection:
    listen: tuple[str, ...] = _setting(
        ("/ip4/127.0.0.1/tcp/8080",), parse_tcp_multiaddrs,
        "HTTP gateway (read-only, /ipfs/{cid}) on TCP multiaddrs; [] turns it off")


@dataclass(frozen=True)
class LogSection:
    level: str = _setting("info", choice("debug", "info", "warning", "error"), "our log level")
    format: str = _setting("auto", choice("auto", "json", "console"), "auto: JSON unless a TTY")
    libp2p_level: str = _setting(
        "warning", choice("debug", "info", "warning", "error"), "level of py-libp2p's loggers"
    )


SECTIONS: dict[str, type] = {
    "node": NodeSection,
    "routing": RoutingSection,
    "storage": StorageSection,
    "connmgr": ConnMgrSection,
    "tasks": TasksSection,
    "pinning": PinningSection,
    "api": ApiSection,
    "gateway": GatewaySection,
    "log": LogSection,
}


@dataclass(frozen=True)
class NodeConfig:
    """The effective configuration of one node."""

    role: str
    node: NodeSection = NodeSection()
    routing: RoutingSection = RoutingSection()
    storage: StorageSection = StorageSection()
    connmgr: ConnMgrSection = ConnMgrSection()
    tasks: TasksSection = TasksSection()
    pinning: PinningSection = PinningSection()
    api: ApiSection = ApiSection()
    gateway: GatewaySection = GatewaySection()
    log: LogSection = LogSection()

    def to_dict(self) -> dict[str, Any]:
        """Plain values that parse back to the same config (None entries omitted)."""
        out: dict[str, Any] = {"role": self.role}
        for name in SECTIONS:
            section = {
                k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(getattr(self, name)).items()
                if v is not None
            }
            out[name] = section
        return out

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())


# -- loading -----------------------------------------------------------------------------------

Layer = dict[str, dict[str, Any]]


def _fields(section: str) -> dict[str, dataclasses.Field[Any]]:
    return {f.name: f for f in dataclasses.fields(SECTIONS[section])}


def _parse_value(source: str, section: str, key: str, value: Any, label: str | None = None) -> Any:
    fields = _fields(section)
    where = label or f"[{section}] {key}"
    if key not in fields:
        raise ConfigError(source, where, f"unknown key (known: {', '.join(fields)})")
    try:
        return fields[key].metadata["parse"](value)
    except _Invalid as exc:
        raise ConfigError(source, where, str(exc)) from None


def parse_table(source: str, table: Mapping[str, Any]) -> Layer:
    """Check a TOML document (or flag table) and return its parsed values."""
    layer: Layer = {}
    for section, values in table.items():
        if section == "role":
            raise ConfigError(source, "role", "the role is chosen with --role, not in a file")
        if section not in SECTIONS:
            raise ConfigError(
                source, f"[{section}]", f"unknown section (known: {', '.join(SECTIONS)})"
            )
        if not isinstance(values, Mapping):
            raise ConfigError(source, f"[{section}]", "expected a table")
        layer[section] = {k: _parse_value(source, section, k, v) for k, v in values.items()}
    return layer


def read_toml(path: Path) -> Layer:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), "(file)", f"cannot read it: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        line = text_line_of(path, exc.start)
        raise ConfigError(str(path), "(encoding)", f"not UTF-8 text (byte {exc.start}, "
                          f"line {line}): save the file as UTF-8") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), "(syntax)", str(exc)) from None
    return parse_table(str(path), doc)


def text_line_of(path: Path, offset: int) -> int:
    """The 1-based line holding byte ``offset`` of a file (for encoding errors)."""
    try:
        return path.read_bytes()[:offset].count(b"\n") + 1
    except OSError:
        return 0


def env_layer(env: Mapping[str, str]) -> Layer:
    """IPFS_KIT_<SECTION>_<KEY>=value, e.g. IPFS_KIT_STORAGE_MAX_SIZE=10GB."""
    layer: Layer = {}
    for name, value in sorted(env.items()):
        if not name.startswith(ENV_PREFIX) or name in ENV_NOT_CONFIG:
            continue
        rest = name[len(ENV_PREFIX):].lower()
        section = next((s for s in SECTIONS if rest.startswith(s + "_")), None)
        if section is None:
            raise ConfigError(
                "environment", name, f"unknown variable (use {ENV_PREFIX}<SECTION>_<KEY>)"
            )
        key = rest[len(section) + 1:]
        layer.setdefault(section, {})[key] = _parse_value(
            "environment", section, key, value, label=name
        )
    return layer


def role_file(role: str) -> Path:
    """The shipped defaults of a role (config/<role>.toml, packaged as role_config/)."""
    packaged = resources.files("ipfs_kit_node") / "role_config" / f"{role}.toml"
    if packaged.is_file():
        return Path(str(packaged))
    # Running from a source checkout: the files sit at the top level.
    return Path(__file__).resolve().parent.parent / "config" / f"{role}.toml"


def load_config(
    role: str,
    *,
    repo_config: Path | None = None,
    config_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    flags: Layer | None = None,
) -> NodeConfig:
    """Merge every layer, lowest first; each is validated before the merge."""
    if role not in ROLES:
        raise ConfigError("--role", "role", f"expected one of {', '.join(ROLES)}, got {role!r}")
    layers: list[Layer] = [read_toml(role_file(role))]
    if repo_config is not None and repo_config.exists():
        layers.append(read_toml(repo_config))
    if config_file is not None:
        layers.append(read_toml(config_file))
    layers.append(env_layer(os.environ if env is None else env))
    if flags:
        layers.append(flags)
    merged: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    for layer in layers:
        for section, values in layer.items():
            merged[section].update(values)
    sections = {name: SECTIONS[name](**values) for name, values in merged.items()}
    config = NodeConfig(role=role, **sections)
    _check_consistency(config)
    return config


def _check_consistency(config: NodeConfig) -> None:
    cm = config.connmgr
    if cm.low_water is not None and cm.high_water is not None and cm.low_water > cm.high_water:
        raise ConfigError(
            "effective config",
            "[connmgr] low_water",
            f"low_water ({cm.low_water}) must not exceed high_water ({cm.high_water})",
        )
    if not config.node.listen:
        raise ConfigError("effective config", "[node] listen", "at least one address is needed")
    if not config.api.authorizations:
        for address in config.api.listen:
            if not _is_loopback_multiaddr(address):
                raise ConfigError("effective config", "[api] authorizations",
                                  f"the RPC listens on {address}, which is not loopback: set "
                                  "[api.authorizations.NAME] secrets (or listen on 127.0.0.1)")
    pn = config.pinning
    if pn.replication_min is not None and pn.replication_max is not None \
            and pn.replication_min > pn.replication_max:
        raise ConfigError("effective config", "[pinning] replication_min",
                          f"replication_min ({pn.replication_min}) must not exceed "
                          f"replication_max ({pn.replication_max})")


def _is_loopback_multiaddr(text: str) -> bool:
    import ipaddress

    kind, host = multiaddr.Multiaddr(text).items()[0]
    if kind.name.startswith("dns"):
        return str(host) == "localhost"
    return ipaddress.ip_address(str(host)).is_loopback
