"""Who is calling: addresses as proxies write them, and forwarding headers believed only from
trusted proxies (manxue.server.client_address)."""

from __future__ import annotations

import ipaddress

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from manxue.server.client_address import (
    ProxyRule,
    is_loopback,
    is_loopback_host,
    parse_ip,
)


def _request(peer: str | None, headers: list[tuple[str, str]] | None = None) -> web.Request:
    from multidict import CIMultiDict

    req = make_mocked_request("GET", "/v1/models", headers=CIMultiDict(headers or []))
    return req.clone(remote=peer)


@pytest.mark.parametrize(("text", "expected"), [
    ("203.0.113.9", "203.0.113.9"),
    (" 203.0.113.9 ", "203.0.113.9"),
    ("203.0.113.9:51234", "203.0.113.9"),
    ("::1", "::1"),
    ("[::1]", "::1"),
    ("[2001:db8::7]:443", "2001:db8::7"),
    ("::ffff:127.0.0.1", "127.0.0.1"),  # IPv4-mapped: read as IPv4
    ("[::ffff:203.0.113.9]:80", "203.0.113.9"),
    ("fe80::1%eth0", "fe80::1%eth0"),
])
def test_parse_ip_reads_what_proxies_write(text, expected):
    assert parse_ip(text) == ipaddress.ip_address(expected)


@pytest.mark.parametrize("text", [
    None, "", " ", "unknown", "localhost", "203.0.113.9:", "203.0.113.9:http",
    "203.0.113.9:123456", "[::1", "[::1]x", "[::1]:", "[203.0.113.9", "1.2.3", "_hidden",
    "203.0.113.9:８０",  # full-width digits are not a port
])
def test_parse_ip_refuses_anything_else(text):
    assert parse_ip(text) is None


@pytest.mark.parametrize(("address", "local"), [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]:9", True),
    ("::ffff:127.0.0.1", True), ("10.0.0.1", False), ("0.0.0.0", False), ("::", False),
    ("203.0.113.9", False), (None, False), ("", False), ("garbage", False),
])
def test_is_loopback(address, local):
    assert is_loopback(address) is local


@pytest.mark.parametrize(("host", "local"), [
    ("127.0.0.1", True), ("127.0.1.1", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("LocalHost", True), ("localhost.", True),
    ("0.0.0.0", False), ("::", False), ("", False), (None, False), ("10.1.2.3", False),
    ("192.168.1.20", False), ("example.com", False), ("localhost.example.com", False),
    ("evil.localhost", False),  # a name is only trusted when it is exactly localhost
])
def test_is_loopback_host(host, local):
    assert is_loopback_host(host) is local


def test_no_forwarding_headers_is_the_peer():
    rule = ProxyRule(["127.0.0.1"])
    assert rule.client(_request("198.51.100.4")) == "198.51.100.4"
    assert rule.client(_request("127.0.0.1")) == "127.0.0.1"
    assert rule.is_local(_request("127.0.0.1"))
    assert not rule.is_local(_request(None))


@pytest.mark.parametrize("header", [
    ("X-Forwarded-For", "127.0.0.1"), ("x-forwarded-for", "203.0.113.9"),
    ("X-Real-IP", "127.0.0.1"), ("Forwarded", "for=127.0.0.1"),
])
def test_forwarding_headers_from_an_untrusted_peer_make_the_client_unknown(header):
    for rule in (ProxyRule(), ProxyRule(["10.0.0.0/8"])):
        req = _request("127.0.0.1", [header])
        assert rule.client(req) is None
        assert not rule.is_local(req)  # a local proxy nobody declared is not "this machine"


def test_trusted_proxy_gives_the_nearest_untrusted_hop():
    rule = ProxyRule(["127.0.0.1", "10.0.0.0/8"])
    # the client wrote the first two hops itself; nginx appended the real client
    req = _request("127.0.0.1", [("X-Forwarded-For", "127.0.0.1, 10.9.9.9, 203.0.113.9")])
    assert rule.client(req) == "203.0.113.9"
    chain = _request("127.0.0.1", [("X-Forwarded-For", "203.0.113.9, 10.0.0.2")])
    assert rule.client(chain) == "203.0.113.9"
    split = _request("10.0.0.3", [("X-Forwarded-For", "198.51.100.1"),
                                  ("X-Forwarded-For", "203.0.113.9, 10.0.0.2")])
    assert rule.client(split) == "203.0.113.9"  # several header lines read as one list


def test_trusted_proxy_all_hops_trusted_is_the_first():
    rule = ProxyRule(["127.0.0.1"])
    req = _request("127.0.0.1", [("X-Forwarded-For", "127.0.0.1")])
    assert rule.client(req) == "127.0.0.1" and rule.is_local(req)


def test_trusted_proxy_with_ports_and_ipv4_mapped_peer():
    rule = ProxyRule(["127.0.0.1"])
    req = _request("::ffff:127.0.0.1", [("X-Forwarded-For", "203.0.113.9:51234")])
    assert rule.client(req) == "203.0.113.9:51234" and not rule.is_local(req)
    v6 = _request("127.0.0.1", [("X-Forwarded-For", "[::1]:4000")])
    assert rule.is_local(v6)


def test_trusted_proxy_x_real_ip_only_without_x_forwarded_for():
    rule = ProxyRule(["127.0.0.1"])
    assert rule.client(_request("127.0.0.1", [("X-Real-IP", "203.0.113.9")])) == "203.0.113.9"
    both = _request("127.0.0.1", [("X-Real-IP", "127.0.0.1"), ("X-Forwarded-For", "203.0.113.9")])
    assert rule.client(both) == "203.0.113.9"


@pytest.mark.parametrize("value", ["", " ", "unknown", "203.0.113.9, , 127.0.0.1", "not-an-ip",
                                   "203.0.113.9, garbage"])
def test_trusted_proxy_unreadable_hops_make_the_client_unknown(value):
    rule = ProxyRule(["127.0.0.1"])
    assert rule.client(_request("127.0.0.1", [("X-Forwarded-For", value)])) is None


def test_trusted_proxy_only_forwarded_header_is_unknown():
    rule = ProxyRule(["127.0.0.1"])
    assert rule.client(_request("127.0.0.1", [("Forwarded", "for=127.0.0.1")])) is None


def test_trusts_mixed_families_and_ranges():
    rule = ProxyRule(["10.0.0.0/8", "::1", "2001:db8::/32"])
    assert rule.trusts("10.200.0.1") and rule.trusts("::1") and rule.trusts("2001:db8::9")
    assert rule.trusts("::ffff:10.0.0.1")  # IPv4-mapped peer of a dual-stack socket
    assert not rule.trusts("11.0.0.1") and not rule.trusts("127.0.0.1")
    assert not rule.trusts(None) and not rule.trusts("garbage")
