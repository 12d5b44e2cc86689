"""The network policy of audits started through the HTTP API (manxue.verify.netguard), and
the verifier's client under it: what is refused, how hosts are read, the resolver that
every connection goes through, redirects and size caps. Servers are real, on 127.0.0.1."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterator

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from hypothesis import given
from hypothesis import strategies as st

from manxue.testing.loopback import LoopbackServer
from manxue.verify import client
from manxue.verify.client import Endpoint, api_error, usage_of
from manxue.verify.netguard import (
    GuardedResolver,
    Policy,
    TargetForbidden,
    forbidden_reason,
    literal_ip,
    parse_ipv4,
    preflight,
)

LEAK = "LEAK-c4n4ry"


class Table(AbstractResolver):
    """A fixed name → addresses table in place of DNS; counts lookups."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.lookups: list[str] = []

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        self.lookups.append(host)
        if host not in self.table:
            raise OSError(f"no such name {host}")
        return [ResolveResult(hostname=host, host=a, port=port,
                              family=socket.AF_INET6 if ":" in a else socket.AF_INET,
                              proto=0, flags=0) for a in self.table[host]]

    async def close(self) -> None:
        return None


class Canary:
    """A loopback server that records every request and answers with secret-looking text."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        app = web.Application()
        app.router.add_route("*", "/redirect/{tail:.*}", self.redirect)
        app.router.add_route("*", "/big/{tail:.*}", self.big)
        app.router.add_route("*", "/chatty/{tail:.*}", self.chatty)
        app.router.add_route("*", "/{tail:.*}", self.any)
        self.server = LoopbackServer(app)

    async def any(self, request: web.Request) -> web.Response:
        self.hits.append(request.path)
        return web.Response(text=f"{LEAK} internal data", status=200)

    async def redirect(self, request: web.Request) -> web.Response:
        self.hits.append(request.path)
        raise web.HTTPFound(f"{self.server.url}/secret")

    async def big(self, request: web.Request) -> web.Response:
        self.hits.append(request.path)
        return web.Response(body=b"{" + b" " * (client.MAX_BODY + 10) + b"}",
                            content_type="application/json")

    async def chatty(self, request: web.Request) -> web.StreamResponse:
        self.hits.append(request.path)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for _ in range(50):
            await resp.write(b'data: {"choices": [{"delta": {"content": "x"}}]}\n\n')
        await resp.write(f"{LEAK} not an event\n".encode())
        await resp.write_eof()
        return resp


@pytest.fixture(scope="module")
def canary() -> Iterator[Canary]:
    c = Canary()
    c.server.start()
    yield c
    c.server.stop()


@pytest.fixture
def fresh(canary: Canary) -> Canary:
    canary.hits.clear()
    return canary


# -- how hosts are read -------------------------------------------------------------------------

@pytest.mark.parametrize("host", ["127.0.0.1", "127.1", "2130706433", "0x7f.1", "0x7f000001",
                                  "0177.0.0.1", "127.0.0.1.", "127.0.1", "0x7F.0.0.1"])
def test_every_ipv4_spelling_of_loopback_is_read_as_loopback(host: str) -> None:
    assert parse_ipv4(host) == ipaddress.IPv4Address("127.0.0.1") or \
        parse_ipv4(host) in ipaddress.IPv4Network("127.0.0.0/8")


@pytest.mark.parametrize("host", ["1.2.3.4.5", "256.1.1.1", "1.2.3.999", "1..2", "0x1ffffffff"])
def test_malformed_numeric_hosts_are_errors_not_names(host: str) -> None:
    with pytest.raises(ValueError):
        literal_ip(host)


@pytest.mark.parametrize("host", ["example.com", "api.deepseek.com", "localhost", "10.example"])
def test_names_are_not_addresses(host: str) -> None:
    assert literal_ip(host) is None


def test_ipv6_literals_with_brackets_and_zones() -> None:
    assert literal_ip("[::1]") == ipaddress.IPv6Address("::1")
    assert literal_ip("fe80::1%eth0") == ipaddress.IPv6Address("fe80::1")


# -- what is refused ----------------------------------------------------------------------------

@pytest.mark.parametrize("addr, why", [
    ("127.0.0.1", "loopback"), ("127.9.9.9", "loopback"), ("::1", "loopback"),
    ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"),
    ("fd00::1", "private"), ("fc00::1", "private"),
    ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
    ("100.64.0.1", "carrier-grade NAT"), ("100.127.255.254", "carrier-grade NAT"),
    ("224.0.0.1", "multicast"), ("239.1.1.1", "multicast"), ("ff02::1", "multicast"),
    ("ff0e::1", "multicast"), ("0.0.0.0", "unspecified"), ("::", "unspecified"),
    ("240.0.0.1", "reserved"), ("255.255.255.255", "reserved"),
    ("::ffff:127.0.0.1", "loopback"), ("::ffff:10.0.0.1", "private"),
    ("64:ff9b::7f00:1", "loopback"), ("64:ff9b::a9fe:a9fe", "link-local"),
    ("64:ff9b:1::1", "NAT64"), ("2002:7f00:1::", "loopback"), ("2002:a00:1::", "private"),
    ("::ffff:0:7f00:1", "loopback"), ("::7f00:1", "IPv4-compatible"),
    ("2001:db8::1", "documentation"), ("192.0.2.1", "documentation"),
])
def test_non_public_addresses_are_refused(addr: str, why: str) -> None:
    reason = forbidden_reason(ipaddress.ip_address(addr))
    assert reason is not None and why in reason


@pytest.mark.parametrize("addr", ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700::1111",
                                  "::ffff:8.8.8.8", "64:ff9b::808:808", "2a00:1450:4001::1"])
def test_public_addresses_pass(addr: str) -> None:
    assert forbidden_reason(ipaddress.ip_address(addr)) is None


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_every_spelling_of_an_ipv4_address_gets_the_same_answer(n: int) -> None:
    ip = ipaddress.IPv4Address(n)
    mapped = ipaddress.IPv6Address(f"::ffff:{ip}")
    nat64 = ipaddress.IPv6Address((0x64FF9B << 96) | n)
    refused = forbidden_reason(ip) is not None
    assert (forbidden_reason(mapped) is not None) == refused
    assert (forbidden_reason(nat64) is not None) == refused
    assert parse_ipv4(str(n)) == ip and parse_ipv4(hex(n)) == ip


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:9/", "http://localhost/", "http://LocalHost./v1", "http://a.b.localhost/",
    "http://2130706433/", "http://0x7f.1/", "http://[::1]/", "http://[::ffff:127.0.0.1]/",
    "http://0.0.0.0/", "http://10.0.0.1/", "http://169.254.169.254/latest/meta-data/",
    "ftp://example.com/", "file:///etc/passwd", "http://user:pw@example.com/",
    "http://user@example.com/", "http:///v1", "http://1.2.3.4.5/",
])
def test_check_url_refuses_without_dns(url: str) -> None:
    with pytest.raises(TargetForbidden) as got:
        Policy().check_url(url)
    assert got.value.status == 403 and got.value.code == "verify_target_forbidden"


def test_refusals_say_what_to_do_next() -> None:
    with pytest.raises(TargetForbidden) as got:
        Policy().check_url("http://10.0.0.7:8000/v1")
    assert "private" in got.value.message and "[verify] allow_hosts" in got.value.message


def test_allow_hosts_names_addresses_and_ranges() -> None:
    policy = Policy.from_hosts(["LLM.Internal.", "10.1.2.3", "192.168.0.0/16", "fd00::/8"])
    assert policy.names == frozenset({"llm.internal"})
    policy.check_url("http://llm.internal:8000/v1")
    policy.check_url("http://10.1.2.3/")
    policy.check_url("http://192.168.44.5/")
    policy.check_url("http://[fd12::5]/")
    policy.check_url("http://[::ffff:192.168.1.1]/")  # the mapped form of an allowed address
    for url in ("http://10.1.2.4/", "http://127.0.0.1/", "http://other.internal.localhost/"):
        with pytest.raises(TargetForbidden):
            policy.check_url(url)


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "fd00::/200", "not a range/8", "1:2:3"])
def test_bad_allow_hosts_entries_are_config_errors(entry: str) -> None:
    with pytest.raises(ValueError, match="allow_hosts"):
        Policy.from_hosts([entry])


# -- the resolver -------------------------------------------------------------------------------

def test_resolver_refuses_a_name_if_any_address_is_forbidden() -> None:
    table = Table({"public.test": ["93.184.216.34"], "mixed.test": ["93.184.216.34", "10.0.0.5"],
                   "inside.test": ["127.0.0.1"]})
    policy = Policy.from_hosts([], resolver=lambda: table)

    async def scenario() -> None:
        r = GuardedResolver(policy)
        assert [x["host"] for x in await r.resolve("public.test", 443)] == ["93.184.216.34"]
        assert [x["host"] for x in await r.resolve("8.8.8.8", 443)] == ["8.8.8.8"]
        for name in ("mixed.test", "inside.test", "127.0.0.1.", "0x7f.1", "localhost"):
            with pytest.raises(TargetForbidden):
                await r.resolve(name, 443)

    asyncio.run(scenario())
    assert table.lookups == ["public.test", "mixed.test", "inside.test"]  # literals: no DNS


def test_resolver_allows_listed_names_and_ranges() -> None:
    table = Table({"llm.internal": ["10.9.9.9"], "gpu.internal": ["10.2.0.7"]})

    async def scenario() -> None:
        named = GuardedResolver(Policy.from_hosts(["llm.internal"], resolver=lambda: table))
        assert [x["host"] for x in await named.resolve("llm.internal", 80)] == ["10.9.9.9"]
        ranged = GuardedResolver(Policy.from_hosts(["10.2.0.0/16"], resolver=lambda: table))
        assert [x["host"] for x in await ranged.resolve("gpu.internal", 80)] == ["10.2.0.7"]
        with pytest.raises(TargetForbidden):
            await ranged.resolve("llm.internal", 80)

    asyncio.run(scenario())


def test_preflight_resolves_and_checks_every_address() -> None:
    table = Table({"api.test": ["93.184.216.34", "2606:2800:220:1::1"], "evil.test": ["::1"]})
    policy = Policy.from_hosts([], resolver=lambda: table)
    assert asyncio.run(preflight("https://api.test/v1", policy)) == [
        "93.184.216.34", "2606:2800:220:1::1"]
    with pytest.raises(TargetForbidden):
        asyncio.run(preflight("https://evil.test/v1", policy))
    with pytest.raises(OSError):
        asyncio.run(preflight("https://nowhere.test/v1", policy))


# -- the client under a guard -------------------------------------------------------------------

def test_guarded_endpoint_checks_the_connection_not_only_the_url(fresh: Canary) -> None:
    """A name that passes any check of the URL but resolves to loopback when the audit
    connects: refused at the connection, nothing sent, and no further request tried."""
    table = Table({"rebound.test": ["127.0.0.1"]})
    url = f"http://rebound.test:{fresh.server.port}/v1"

    async def scenario() -> None:
        async with Endpoint(url, "m", guard=Policy.from_hosts([], resolver=lambda: table)) as ep:
            reply = await ep.chat("t", {"messages": []})
            assert reply.status == 0 and reply.error and "loopback" in reply.error
            assert ep.refused is not None
            stream = await ep.stream("t", {"messages": []})
            assert stream.status == 0 and stream.error and "TargetForbidden" in stream.error
            assert ep.ledger.spend("t", "suspect").requests == 1  # the second was never sent
        async with Endpoint(url, "m", guard=Policy.from_hosts(["rebound.test"],
                                                              resolver=lambda: table)) as ok:
            assert (await ok.chat("t", {"messages": []})).status == 200

    asyncio.run(scenario())
    assert fresh.hits == ["/v1/chat/completions"]  # only the allow-listed one arrived
    assert table.lookups.count("rebound.test") == 2


def test_guarded_endpoint_refuses_literal_addresses(fresh: Canary) -> None:
    async def scenario() -> None:
        for host in ("127.0.0.1", "[::ffff:127.0.0.1]"):
            async with Endpoint(f"http://{host}:{fresh.server.port}", "m", guard=Policy()) as ep:
                reply = await ep.chat("t", {"messages": []})
                assert reply.status == 0 and ep.refused is not None

    asyncio.run(scenario())
    assert fresh.hits == []


def test_the_cli_client_reaches_loopback(fresh: Canary) -> None:
    async def scenario() -> int:
        async with Endpoint(fresh.server.url, "m") as ep:  # guard=None: the operator's CLI
            return (await ep.chat("t", {"messages": []})).status

    assert asyncio.run(scenario()) == 200 and fresh.hits == ["/v1/chat/completions"]


def test_redirects_are_not_followed(fresh: Canary) -> None:
    async def scenario() -> tuple[client.Reply, client.StreamReply]:
        async with Endpoint(f"{fresh.server.url}/redirect", "m") as ep:
            return await ep.chat("t", {}), await ep.stream("t", {})

    reply, stream = asyncio.run(scenario())
    assert reply.status == 302 and reply.data is None and "redirect" in (reply.error or "")
    assert stream.status == 302 and not stream.chunks
    assert fresh.hits == ["/redirect/chat/completions"] * 2  # never /secret


def test_bodies_are_read_up_to_a_cap_and_never_kept_raw(fresh: Canary,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client, "MAX_STREAM_CHUNKS", 20)

    async def scenario() -> tuple[client.Reply, client.StreamReply, client.Reply]:
        async with Endpoint(f"{fresh.server.url}/big", "m") as big, \
                Endpoint(f"{fresh.server.url}/chatty", "m") as chatty, \
                Endpoint(fresh.server.url, "m") as plain:
            return await big.chat("t", {}), await chatty.stream("t", {}), \
                await plain.chat("t", {})

    big, stream, plain = asyncio.run(scenario())
    assert big.status == 200 and big.data is None and "longer than" in (big.error or "")
    assert len(stream.chunks) == 20 and "not read" in (stream.error or "")
    assert plain.ok is False and plain.data is None  # 200, but not JSON
    for r in (big, stream, plain):
        assert LEAK not in repr(r)


def test_only_the_parsed_error_object_is_kept() -> None:
    long = "bad request: " + "y" * 2000
    err = api_error({"error": {"message": long, "type": "invalid_request_error", "code": "x",
                               "secret": LEAK}})
    assert err is not None and set(err) == {"message", "type", "code"}
    assert len(err["message"]) <= 301 and err["message"].startswith("bad request")
    assert api_error({"detail": LEAK}) is None and api_error(LEAK) is None
    assert api_error({"error": LEAK}) is None


def test_usage_keeps_only_counts() -> None:
    usage = usage_of({"usage": {"prompt_tokens": 3, "completion_tokens": 1, "note": LEAK,
                                "prompt_tokens_details": {"cached_tokens": 2, "x": LEAK},
                                "flag": True}})
    assert usage == {"prompt_tokens": 3, "completion_tokens": 1,
                     "prompt_tokens_details": {"cached_tokens": 2}}
