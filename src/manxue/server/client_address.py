"""Who is calling: the client's address as the gateway should believe it.

Behind a reverse proxy every request arrives from the proxy's address, often loopback. The
forwarding headers (`X-Forwarded-For`, `Forwarded`, `X-Real-IP`) are believed only when the
peer is one of `[server] trusted_proxies`; a request that carries them from any other peer is
treated as coming from an unknown, remote client, so a local proxy that nobody declared can
never make the world look like "this machine".
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_FORWARDING = ("X-Forwarded-For", "Forwarded", "X-Real-IP")


class ProxyRule:
    """The trusted proxies, parsed once at start."""

    def __init__(self, trusted: Iterable[str] = ()) -> None:
        self.networks: tuple[Network, ...] = tuple(
            ipaddress.ip_network(t, strict=False) for t in trusted)

    def trusts(self, address: str | None) -> bool:
        ip = parse_ip(address)
        return ip is not None and any(ip in net for net in self.networks)

    def client(self, request: web.Request) -> str | None:
        """The client's address, or None when it cannot be known (a forwarded request from
        a peer that is not a trusted proxy, or a header that does not parse)."""
        peer = request.remote
        headers = request.headers
        if not any(h in headers for h in _FORWARDING):
            return peer
        if not self.trusts(peer):
            return None
        hops = [h.strip() for v in headers.getall("X-Forwarded-For", ()) for h in v.split(",")]
        if not hops and "X-Real-IP" in headers:
            hops = [headers["X-Real-IP"].strip()]
        if not hops:
            return None  # only `Forwarded`, which this gateway does not read: unknown
        for hop in reversed(hops):  # the nearest hop first; proxies append on the right
            if parse_ip(hop) is None:
                return None
            if not self.trusts(hop):
                return hop
        return hops[0]

    def is_local(self, request: web.Request) -> bool:
        """True only for a client known to be on this machine."""
        return is_loopback(self.client(request))


def parse_ip(address: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address as a proxy writes it (`1.2.3.4`, `1.2.3.4:5678`, `::1`, `[::1]`,
    `[::1]:5678`), IPv4-mapped IPv6 read as IPv4; None for anything else."""
    if not address:
        return None
    text = address.strip()
    if text.startswith("["):  # [v6] or [v6]:port
        end = text.find("]")
        if end < 0 or not (text[end + 1:] == "" or _is_port(text[end + 1:])):
            return None
        text = text[1:end]
    elif text.count(":") == 1:  # v4:port (a bare IPv6 address has at least two colons)
        text, _, port = text.partition(":")
        if not _is_port(":" + port):
            return None
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _is_port(text: str) -> bool:
    digits = text[1:]
    return text[:1] == ":" and digits.isascii() and digits.isdecimal() and len(digits) <= 5


def is_loopback(address: str | None) -> bool:
    """True for an address on this machine (127.0.0.0/8, ::1, IPv4-mapped loopback)."""
    ip = parse_ip(address)
    return ip is not None and ip.is_loopback


def is_loopback_host(host: str | None) -> bool:
    """True when binding `host` ([server] host, --host) reaches this machine only:
    `localhost`, an address in 127.0.0.0/8, or ::1. Any other name, the wildcard addresses
    (0.0.0.0, ::, empty) and every other address count as reachable from the network."""
    if host is None:
        return False
    name = host.strip().rstrip(".").lower()
    if name == "localhost":
        return True
    return is_loopback(name)
