"""Retry, fail over, circuit breaker, hedging, stream breaks and client disconnects."""

from __future__ import annotations

import collections
import socket
import time

import httpx
import openai
import pytest

from manxue.testing.deepseek_emulator import Behavior
from tests.helpers import deployment

MSG = [{"role": "user", "content": "hi"}]
FAST = {"backoff_base": 0.01, "backoff_max": 0.05}


def _dead_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens here now
    return f"http://127.0.0.1:{port}"


def _ask(gw, **kw):
    return gw.client().chat.completions.create(model="deepseek-chat", messages=MSG, **kw)


def test_retry_same_deployment_after_503(make_gateway, upstream):
    gw = make_gateway([deployment(upstream, "a")], router=FAST)
    upstream.emu.push(Behavior(status=503))
    assert _ask(gw).choices[0].message.content == "You said: hi"
    assert len(upstream.emu.received) == 2


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_fail_over_to_next_deployment(make_gateway, upstreams, status):
    a, b = upstreams[0], upstreams[1]
    gw = make_gateway([deployment(a, "a"), deployment(b, "b", priority=1)], router=FAST)
    a.emu.default = Behavior(status=status)
    assert _ask(gw).choices[0].message.content == "You said: hi"
    assert len(b.emu.received) == 1


def test_fail_over_on_connect_error_and_first_byte_timeout(make_gateway, upstreams):
    a, b = upstreams[0], upstreams[1]
    dead = {"name": "dead", "model": "deepseek-chat", "base_url": _dead_url()}
    slow = deployment(a, "slow", priority=1, timeouts={"first_byte": 0.3})
    gw = make_gateway([dead, slow, deployment(b, "b", priority=2)], router=FAST)
    a.emu.default = Behavior(first_byte_delay=5)
    t0 = time.monotonic()
    assert _ask(gw).choices[0].message.content
    assert time.monotonic() - t0 < 3
    assert len(b.emu.received) == 1
    text = httpx.get(gw.url + "/metrics").text
    assert 'manxue_upstream_errors_total{deployment="slow",reason="timeout"}' in text
    assert 'manxue_upstream_errors_total{deployment="dead",reason="unreachable"}' in text


def test_retry_after_is_honoured(make_gateway, upstream):
    gw = make_gateway([deployment(upstream, "a")], router=FAST)
    upstream.emu.push(Behavior(status=429, retry_after=1))
    t0 = time.monotonic()
    _ask(gw)
    assert time.monotonic() - t0 >= 0.95
    r = upstream.emu.received
    assert r[1].at - r[0].at >= 0.95


def test_all_rate_limited_gives_429_with_retry_after(make_gateway, upstream):
    gw = make_gateway([deployment(upstream, "a")], router={**FAST, "retry_after_max": 0.5})
    upstream.emu.default = Behavior(status=429, retry_after=30)
    r = httpx.post(gw.url + "/v1/chat/completions", json={"model": "deepseek-chat", "messages": MSG})
    assert r.status_code == 429
    assert r.headers["Retry-After"] == "30"
    assert r.json()["error"]["type"] == "rate_limit_error"


def test_all_down_gives_503_without_naming_upstreams(make_gateway, upstreams):
    a, b = upstreams[0], upstreams[1]
    gw = make_gateway([deployment(a, "secret-supplier-1"), deployment(b, "secret-supplier-2")],
                      router=FAST)
    a.emu.default = b.emu.default = Behavior(status=503)
    with pytest.raises(openai.InternalServerError) as ei:
        _ask(gw)
    assert ei.value.status_code == 503
    assert "secret-supplier" not in str(ei.value)
    assert ei.value.response.headers.get("Retry-After")


def test_circuit_breaker_opens_skips_then_half_open_probe_closes(make_gateway, upstreams):
    a, b = upstreams[0], upstreams[1]
    router = {**FAST, "retries_per_deployment": 0, "breaker": {"failures": 3, "cooldown": 0.6}}
    gw = make_gateway([deployment(a, "a"), deployment(b, "b", priority=1)], router=router)
    a.emu.default = Behavior(status=500)
    for _ in range(3):
        _ask(gw)
    assert len(a.emu.received) == 3
    assert 'manxue_breaker_state{deployment="a"} 2.0' in httpx.get(gw.url + "/metrics").text
    for _ in range(5):  # open: the dead upstream costs nothing
        _ask(gw)
    assert len(a.emu.received) == 3
    assert httpx.get(gw.url + "/ready").json()["deployments"]["a"]["breaker"] == "open"
    time.sleep(0.7)
    a.emu.default = Behavior()  # recovered
    _ask(gw)  # the half-open probe goes to a, succeeds, closes the breaker
    assert len(a.emu.received) == 4
    _ask(gw)
    assert len(a.emu.received) == 5
    assert 'manxue_breaker_state{deployment="a"} 0.0' in httpx.get(gw.url + "/metrics").text


def test_failed_probe_reopens(make_gateway, upstreams):
    a, b = upstreams[0], upstreams[1]
    router = {**FAST, "retries_per_deployment": 0, "breaker": {"failures": 1, "cooldown": 0.3}}
    gw = make_gateway([deployment(a, "a"), deployment(b, "b", priority=1)], router=router)
    a.emu.default = Behavior(status=503)
    _ask(gw)
    time.sleep(0.35)
    _ask(gw)  # probe fails → open again
    _ask(gw)
    assert len(a.emu.received) == 2


def test_hedging_second_deployment_wins_and_loser_is_cancelled(make_gateway, upstreams):
    a, b = upstreams[0], upstreams[1]
    gw = make_gateway([deployment(a, "a"), deployment(b, "b", priority=1)],
                      router={"hedge_after": 0.2})
    a.emu.default = Behavior(first_byte_delay=3)
    t0 = time.monotonic()
    text = "".join(ch.choices[0].delta.content or "" for ch in _ask(gw, stream=True) if ch.choices)
    assert text == "You said: hi"
    assert time.monotonic() - t0 < 2
    assert len(b.emu.received) == 1
    deadline = time.monotonic() + 2
    while a.emu.cancelled == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert a.emu.cancelled == 1
    assert "manxue_hedges_total" in httpx.get(gw.url + "/metrics").text


def test_mid_stream_drop_ends_with_visible_error(gateway, upstream):
    upstream.emu.push(Behavior(chunks=5, drop_after=2, content="one two three four five six"))
    got = []
    with pytest.raises(openai.APIError) as ei:
        for ch in _ask(gateway, stream=True):
            if ch.choices:
                got.append(ch.choices[0].delta.content or "")
    assert "broke off" in str(ei.value)
    assert "".join(got).startswith("one two")
    assert len(upstream.emu.received) == 1  # after the first byte there is no retry


def test_client_disconnect_cancels_upstream(gateway, upstream):
    upstream.emu.default = Behavior(chunks=50, chunk_delay=0.1, content=" ".join(["w"] * 50))
    body = {"model": "deepseek-chat", "messages": MSG, "stream": True}
    with httpx.stream("POST", gateway.url + "/v1/chat/completions", json=body, timeout=10) as r:
        it = r.iter_raw()
        next(it)
    deadline = time.monotonic() + 2
    while upstream.emu.cancelled == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert upstream.emu.cancelled == 1


def test_client_disconnect_while_waiting_for_first_byte(gateway, upstream):
    upstream.emu.default = Behavior(first_byte_delay=5)
    body = {"model": "deepseek-chat", "messages": MSG}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(gateway.url + "/v1/chat/completions", json=body, timeout=0.3)
    deadline = time.monotonic() + 2
    while upstream.emu.cancelled == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert upstream.emu.cancelled == 1


def test_priority_groups_and_weights(make_gateway, upstreams):
    a, b, c = upstreams
    gw = make_gateway([deployment(a, "a", weight=3), deployment(b, "b", weight=1),
                       deployment(c, "c", priority=5)])
    for _ in range(200):
        _ask(gw)
    na, nb = len(a.emu.received), len(b.emu.received)
    assert na + nb == 200 and c.emu.received == []
    assert 0.65 < na / 200 < 0.85


def test_least_latency_prefers_the_faster(make_gateway, upstreams):
    a, b = upstreams[0], upstreams[1]
    gw = make_gateway([deployment(a, "a"), deployment(b, "b")], router={"strategy": "least-latency"})
    a.emu.default = Behavior(first_byte_delay=0.05)
    for _ in range(30):
        _ask(gw)
    assert len(b.emu.received) >= 25


def test_least_busy_spreads_concurrent_streams(make_gateway, upstreams):
    a, b = upstreams[0], upstreams[1]
    gw = make_gateway([deployment(a, "a"), deployment(b, "b")], router={"strategy": "least-busy"})
    slow = Behavior(chunks=5, chunk_delay=0.1, content="a b c d e")
    a.emu.default = b.emu.default = slow
    body = {"model": "deepseek-chat", "messages": MSG, "stream": True}
    streams = [httpx.stream("POST", gw.url + "/v1/chat/completions", json=body, timeout=10)
               for _ in range(4)]
    for s in streams:
        s.__enter__()
    for s in streams:
        s.__exit__(None, None, None)
    counts = collections.Counter([len(a.emu.received), len(b.emu.received)])
    assert counts == {2: 2}
