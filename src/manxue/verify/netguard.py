"""What an audit started through the HTTP API may reach: public addresses, and what the
operator allow-listed (`[verify] allow_hosts`).

    policy = Policy.from_hosts(["10.1.2.3", "192.168.0.0/16", "llm.internal"])
    policy.check_url("http://127.0.0.1:8000/v1")       # raises TargetForbidden (loopback)
    await preflight("https://api.example.com", policy)  # resolves, checks every address
    session = guarded_session(policy)                   # every connection checked again

Refused unless allow-listed: loopback, private (RFC 1918, fc00::/7), link-local, CGNAT
(100.64.0.0/10), multicast, unspecified, reserved, documentation and benchmarking ranges, any
other address that is not globally routable, and IPv6 forms that carry such an IPv4 address
(::ffff:127.0.0.1, NAT64 64:ff9b::/96, 6to4, Teredo). Hosts are read the way a browser or
libc reads them (2130706433, 0x7f.1, 127.1, trailing dots), and `localhost` / `*.localhost`
are refused without asking DNS. Also refused: schemes other than http(s) and user:password@.

The check runs after DNS resolution, inside the resolver of the session that connects
(`GuardedResolver`): the connection goes to exactly the addresses that were checked, so a name
that resolves to a public address first and to 127.0.0.1 later (DNS rebinding) is refused at
the second lookup. Literal addresses never reach a resolver; a request hook checks them.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from manxue.errors import PermissionDenied

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

HINT = ("to audit an internal endpoint, add its host name, address or range to [verify] "
        "allow_hosts in the gateway's config")
_NUMERIC_LABEL = re.compile(r"0[xX][0-9a-fA-F]*|[0-9]+")

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network
_SPECIAL: tuple[tuple[IPNetwork, str], ...] = (
    (_V4("0.0.0.0/8"), "an unspecified ('this network') address"),
    (_V4("10.0.0.0/8"), "a private (RFC 1918) address"),
    (_V4("100.64.0.0/10"), "a carrier-grade NAT (100.64.0.0/10) address"),
    (_V4("127.0.0.0/8"), "a loopback address"),
    (_V4("169.254.0.0/16"), "a link-local address"),
    (_V4("172.16.0.0/12"), "a private (RFC 1918) address"),
    (_V4("192.0.0.0/24"), "an IETF protocol assignment address"),
    (_V4("192.0.2.0/24"), "a documentation address"),
    (_V4("192.88.99.0/24"), "a 6to4 relay anycast address"),
    (_V4("192.168.0.0/16"), "a private (RFC 1918) address"),
    (_V4("198.18.0.0/15"), "a benchmarking address"),
    (_V4("198.51.100.0/24"), "a documentation address"),
    (_V4("203.0.113.0/24"), "a documentation address"),
    (_V4("224.0.0.0/4"), "a multicast address"),
    (_V4("240.0.0.0/4"), "a reserved address"),
    (_V6("::/128"), "an unspecified address"),
    (_V6("::1/128"), "a loopback address"),
    (_V6("::/96"), "an IPv4-compatible (reserved) address"),
    (_V6("64:ff9b:1::/48"), "a local-use NAT64 address"),
    (_V6("100::/64"), "a discard-only address"),
    (_V6("2001::/23"), "an IETF protocol assignment address"),
    (_V6("2001:db8::/32"), "a documentation address"),
    (_V6("3fff::/20"), "a documentation address"),
    (_V6("fc00::/7"), "a private (unique local, fc00::/7) address"),
    (_V6("fe80::/10"), "a link-local address"),
    (_V6("fec0::/10"), "a site-local (deprecated) address"),
    (_V6("ff00::/8"), "a multicast address"),
)
_NAT64 = _V6("64:ff9b::/96")
_TRANSLATED = _V6("::ffff:0:0:0/96")


class TargetForbidden(PermissionDenied):
    """An audit target the network policy refuses (403 verify_target_forbidden)."""

    code = "verify_target_forbidden"


# -- pure functions ---------------------------------------------------------------------------

def normalize_host(host: str) -> str:
    """`[::1]` → `::1`, `LocalHost.` → `localhost`: lower case, no brackets, no trailing dots."""
    h = host.strip().lower()
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    return h.rstrip(".")


def parse_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The address a numeric IPv4 host means to libc's inet_aton and to browsers: `127.1`,
    `2130706433`, `0x7f.1`, `0177.0.0.1` are all 127.0.0.1. None when the host is not numeric
    (a name); ValueError when it looks numeric but is no address (`1.2.3.4.5`, `999.1.1.1`)."""
    labels = normalize_host(host).split(".")
    if not labels or not _NUMERIC_LABEL.fullmatch(labels[-1]):
        return None
    if len(labels) > 4:
        raise ValueError(f"{host!r} is not a valid IPv4 address")
    parts = [_ipv4_number(label, host) for label in labels]
    value = 0
    for part in parts[:-1]:
        if part > 255:
            raise ValueError(f"{host!r} is not a valid IPv4 address")
        value = value * 256 + part
    rest_bits = 8 * (5 - len(parts))
    if parts[-1] >= 1 << rest_bits:
        raise ValueError(f"{host!r} is not a valid IPv4 address")
    return ipaddress.IPv4Address((value << rest_bits) | parts[-1])


def _ipv4_number(label: str, host: str) -> int:
    try:
        if label[:2] in ("0x", "0X"):
            return int(label[2:] or "0", 16)
        if len(label) > 1 and label.startswith("0"):
            return int(label, 8)
        return int(label, 10)
    except ValueError:
        raise ValueError(f"{host!r} is not a valid IPv4 address") from None


def literal_ip(host: str) -> IPAddress | None:
    """The address a host names literally (any IPv4 spelling, IPv6 with or without brackets
    or zone), None for a host name; ValueError for a malformed literal."""
    h = normalize_host(host)
    if ":" in h:
        return ipaddress.IPv6Address(h.partition("%")[0])
    return parse_ipv4(h)


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address stands for: mapped, translated, NAT64, 6to4, Teredo."""
    if ip.ipv4_mapped is not None:
        return [ip.ipv4_mapped]
    if ip in _NAT64 or ip in _TRANSLATED:
        return [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
    if ip.sixtofour is not None:
        return [ip.sixtofour]
    if ip.teredo is not None:
        return list(ip.teredo)
    return []


def forbidden_reason(ip: IPAddress) -> str | None:
    """Why an audit may not reach `ip` (e.g. "a loopback address"), None for a public one."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            ip = ipaddress.IPv6Address(str(ip).partition("%")[0])
        inside = embedded_ipv4(ip)
        for inner in inside:
            why = forbidden_reason(inner)
            if why is not None:
                return f"{why} ({inner}, inside the IPv6 address {ip})"
        if inside:  # a translation of public IPv4 addresses: as public as they are
            return None
    for net, why in _SPECIAL:
        if ip in net:
            return why
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_loopback or ip.is_link_local or ip.is_private or ip.is_reserved \
            or ip.is_unspecified or not ip.is_global:
        return "an address that is not publicly routable"
    return None


def is_localhost_name(host: str) -> bool:
    """`localhost` and every name under it (RFC 6761) mean this machine."""
    h = normalize_host(host)
    return h == "localhost" or h.endswith(".localhost")


# -- the policy -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Policy:
    """Which non-public targets audits may reach anyway (the operator's allow-list)."""

    names: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()
    resolver: Callable[[], AbstractResolver] | None = field(default=None, compare=False)
    """Where names are looked up (default: aiohttp's ThreadedResolver, i.e. getaddrinfo)."""

    @classmethod
    def from_hosts(cls, entries: Iterable[str],
                   resolver: Callable[[], AbstractResolver] | None = None) -> Policy:
        """`["llm.internal", "10.1.2.3", "192.168.0.0/16", "fd00::/8"]`: names are matched
        exactly (case and trailing dot aside), addresses and ranges contain addresses."""
        names: set[str] = set()
        nets: list[IPNetwork] = []
        for raw in entries:
            entry = normalize_host(raw)
            if not entry:
                continue
            try:
                nets.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                if "/" in entry or ":" in entry:
                    raise ValueError(f"[verify] allow_hosts: {raw!r} is neither a host name, "
                                     "an address nor a CIDR range") from None
                names.add(entry)
        return cls(frozenset(names), tuple(nets), resolver)

    def allows_name(self, host: str) -> bool:
        return normalize_host(host) in self.names

    def allows_address(self, ip: IPAddress) -> bool:
        candidates: list[IPAddress] = [ip]
        if isinstance(ip, ipaddress.IPv6Address):
            candidates.extend(embedded_ipv4(ip))
        return any(c in net for c in candidates for net in self.networks)

    def check_address(self, host: str, ip: IPAddress) -> None:
        """Raise TargetForbidden when `host` (as resolved to `ip`) may not be reached."""
        if self.allows_name(host) or self.allows_address(ip):
            return
        why = forbidden_reason(ip)
        if why is not None:
            shown = f"{host!r}" if normalize_host(host) == str(ip) else f"{host!r} ({ip})"
            raise TargetForbidden(f"host {shown} is {why}: audits started through the HTTP "
                                  f"API may reach public endpoints only; {HINT}")

    def check_host(self, host: str) -> IPAddress | None:
        """Check what can be checked without DNS: literal addresses (returned) and
        localhost names; None for a name that still has to be resolved."""
        if not normalize_host(host):
            raise TargetForbidden("the target URL has no host; give the endpoint's URL, e.g. "
                                  "https://api.example.com")
        if self.allows_name(host):
            return None
        try:
            ip = literal_ip(host)
        except ValueError as exc:
            raise TargetForbidden(f"{exc}; give a host name or a dotted IPv4 / IPv6 "
                                  "address") from None
        if ip is not None:
            self.check_address(host, ip)
            return ip
        if is_localhost_name(host):
            raise TargetForbidden(f"host {host!r} is this machine (localhost): audits started "
                                  f"through the HTTP API may reach public endpoints only; {HINT}")
        return None

    def check_url(self, url: str | URL) -> URL:
        """Scheme, user info and a literal host: everything but DNS. Returns the parsed URL."""
        u = url if isinstance(url, URL) else _parse(url)
        if u.scheme not in ("http", "https"):
            raise TargetForbidden(f"scheme {u.scheme!r} is refused: give an http:// or "
                                  "https:// URL")
        if u.raw_user is not None or u.raw_password is not None:
            raise TargetForbidden("URLs with user:password@ are refused: send the endpoint's "
                                  "key as api_key (or reference_api_key) instead")
        self.check_host(u.raw_host or "")
        return u

    def new_resolver(self) -> AbstractResolver:
        return self.resolver() if self.resolver is not None else aiohttp.ThreadedResolver()


def _parse(url: str) -> URL:
    try:
        return URL(url)
    except (ValueError, TypeError) as exc:
        raise TargetForbidden(f"{url!r} is not a valid URL ({exc})") from None


# -- the resolver and the session -------------------------------------------------------------

class GuardedResolver(AbstractResolver):
    """Resolves with the policy's resolver, then refuses the name if any address it resolved
    to is forbidden; the connection uses only the addresses returned (checked) here."""

    def __init__(self, policy: Policy) -> None:
        self._policy = policy
        self._inner: AbstractResolver | None = None

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        literal = self._policy.check_host(host)
        if literal is not None:
            return [_literal_result(host, literal, port)]
        if self._inner is None:
            self._inner = self._policy.new_resolver()
        results = await self._inner.resolve(host, port, family)
        if not results:
            raise OSError(f"{host!r} resolved to no address")
        for r in results:
            self._policy.check_address(host, ipaddress.ip_address(r["host"].partition("%")[0]))
        return results

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()


def _literal_result(host: str, ip: IPAddress, port: int) -> ResolveResult:
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    return ResolveResult(hostname=host, host=str(ip), port=port, family=family, proto=0,
                         flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV)


async def preflight(url: str, policy: Policy) -> list[str]:
    """Check `url` completely before anything connects: scheme, user info, host, and every
    address its host resolves to. Returns the addresses; raises TargetForbidden, or OSError
    when the name does not resolve."""
    u = policy.check_url(url)
    resolver = GuardedResolver(policy)
    try:
        results = await resolver.resolve(u.raw_host or "", u.port or 0, socket.AF_UNSPEC)
    finally:
        await resolver.close()
    return [r["host"] for r in results]


def guarded_session(policy: Policy, **kwargs: Any) -> aiohttp.ClientSession:
    """A ClientSession that resolves through GuardedResolver, checks every request's URL
    (literal addresses skip resolvers), ignores proxy settings from the environment; pass
    allow_redirects=False to its requests."""
    trace = aiohttp.TraceConfig()

    async def on_start(_: aiohttp.ClientSession, __: SimpleNamespace,
                       params: aiohttp.TraceRequestStartParams) -> None:
        policy.check_url(params.url)

    trace.on_request_start.append(on_start)
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(policy))
    return aiohttp.ClientSession(connector=connector, trace_configs=[trace], trust_env=False,
                                 **kwargs)
