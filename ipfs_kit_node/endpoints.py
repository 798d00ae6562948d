"""API addresses as Kubo writes them, parsed: data, so config validates them without loading
an HTTP stack.

``/ip4/127.0.0.1/tcp/5001``, ``/dns/host/tcp/9094``, ``/unix/path/to/api.sock`` or an
``http://`` URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import multiaddr

from .errors import ConfigError


@dataclass(frozen=True)
class Endpoint:
    host: str | None = None
    port: int | None = None
    unix: str | None = None

    @property
    def base_url(self) -> str:
        return "http://localhost" if self.unix else f"http://{self.host}:{self.port}"


def parse_api_address(text: str, setting: str = "api") -> Endpoint:
    """A Kubo-style API multiaddr (or an http:// URL) as an Endpoint; ConfigError if neither."""
    if text.startswith(("http://", "https://")):
        try:
            url = urlsplit(text)
            port = url.port
        except ValueError as exc:
            raise ConfigError("config", setting, f"malformed API URL {text!r} ({exc})"
                              ) from None
        if url.scheme == "https":
            raise ConfigError("config", setting, "https is not supported; use a loopback or "
                                                 "unix-socket API, or a TLS-terminating proxy")
        if not url.hostname:
            raise ConfigError("config", setting, f"API URL {text!r} names no host")
        return Endpoint(url.hostname, port or 80)
    try:
        addr = multiaddr.Multiaddr(text)
        protocols = [p.name for p in addr.protocols()]
        if protocols and protocols[0] == "unix":
            return Endpoint(unix=addr.value_for_protocol("unix"))
        if len(protocols) == 2 and protocols[1] == "tcp" and protocols[0] in (
                "ip4", "ip6", "dns", "dns4", "dns6"):
            return Endpoint(addr.value_for_protocol(protocols[0]),
                            int(addr.value_for_protocol("tcp")))
    except Exception as exc:
        raise ConfigError("config", setting, f"malformed API address {text!r} ({exc})"
                          ) from None
    raise ConfigError("config", setting, f"expected /ip4/HOST/tcp/PORT or /unix/PATH, got {text!r}")
