"""TCP listen addresses of the HTTP servers: multiaddrs (``/ip4/127.0.0.1/tcp/5001``,
``/ip6/::1/tcp/0``, ``/dns4/localhost/tcp/5001``) to sockets, and back once bound."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

import multiaddr
import trio

_HOST_PROTOCOLS = ("ip4", "ip6", "dns", "dns4", "dns6")


@dataclass(frozen=True)
class TcpAddress:
    """One TCP listen address; ``port`` 0 asks the kernel for a free one."""

    protocol: str  # ip4, ip6, dns, dns4, dns6
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> TcpAddress:
        """``/ip4|ip6|dns|dns4|dns6/HOST/tcp/PORT``; ValueError says what is wrong."""
        try:
            parts = [(p.name, v) for p, v in multiaddr.Multiaddr(text).items()]
        except Exception as exc:
            raise ValueError(f"malformed multiaddr {text!r} ({exc})") from None
        if len(parts) != 2 or parts[0][0] not in _HOST_PROTOCOLS or parts[1][0] != "tcp":
            raise ValueError(f"{text!r} is not a TCP address (/ip4/HOST/tcp/PORT, /ip6/..., "
                             "/dns4/...)")
        return cls(parts[0][0], str(parts[0][1]), int(parts[1][1]))

    def __str__(self) -> str:
        return f"/{self.protocol}/{self.host}/tcp/{self.port}"

    @property
    def is_loopback(self) -> bool:
        if self.protocol.startswith("dns"):
            return self.host == "localhost"
        return ipaddress.ip_address(self.host).is_loopback

    def bound(self, port: int) -> TcpAddress:
        return TcpAddress(self.protocol, self.host, port)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if self.protocol == "ip6" else self.host
        if self.host in ("0.0.0.0", "::"):
            host = "127.0.0.1" if self.protocol == "ip4" else "[::1]"
        return f"http://{host}:{self.port}"

    def origins(self) -> list[str]:
        """Origins a browser shows for pages served from this address (Kubo allows them)."""
        hosts = {self.url.removeprefix("http://").rsplit(":", 1)[0]}
        if self.is_loopback or self.host in ("0.0.0.0", "::"):
            hosts |= {"localhost", "127.0.0.1", "[::1]"}
        return sorted(f"{scheme}://{h}:{self.port}" for h in hosts for scheme in ("http", "https"))


async def bind_tcp(address: TcpAddress, backlog: int = 128) -> trio.SocketListener:
    """A listening socket on ``address`` (OSError if taken or not ours to bind)."""
    family = {"ip4": socket.AF_INET, "dns4": socket.AF_INET, "ip6": socket.AF_INET6,
              "dns6": socket.AF_INET6}.get(address.protocol, socket.AF_UNSPEC)
    infos = await trio.socket.getaddrinfo(address.host, address.port, family,
                                          socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    if not infos:
        raise OSError(f"{address.host} resolves to no address")
    fam, kind, proto, _, sockaddr = infos[0]
    sock = trio.socket.socket(fam, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if fam == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        await sock.bind(sockaddr)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return trio.SocketListener(sock)
