"""Every admitted request settles exactly once, whatever happens: a ledger row, the
reservation and the concurrency slot given back. Bad bodies never reach admission, and no
body makes the gateway answer 5xx."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from manxue.accounting.counters import LocalCounters
from manxue.server.state import STATE_KEY
from manxue.testing.deepseek_emulator import Behavior
from tests.accounting.conftest import Billing
from tests.helpers import wait_until


def _held(billing: Billing, key_id: str) -> tuple[int, int]:
    """(reserved nano-units, requests in flight) the key's counters hold now."""
    meter = billing.gw.app[STATE_KEY].meter
    assert meter is not None and isinstance(meter.counters, LocalCounters)
    state = meter.counters._keys.get(key_id)
    return (0, 0) if state is None else (state.reserved, len(state.inflight))


def _wait_released(billing: Billing, key_id: str) -> None:
    wait_until(lambda: _held(billing, key_id) == (0, 0), timeout=5,
               what="the reservation and the concurrency slot to come back")


def _nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("field", ["metadata", "messages.content", "tools"])
def test_deep_nesting_is_refused_before_admission(billing, upstream, field):
    key = billing.create_key(balance="1", max_concurrency=1)
    body: dict[str, Any] = {"model": "deepseek-chat",
                            "messages": [{"role": "user", "content": "hi"}]}
    if field == "messages.content":
        body["messages"][0]["content"] = [_nested(300)]
    else:
        body[field] = _nested(300)
    for _ in range(3):
        r = httpx.post(billing.gw.url + "/v1/chat/completions", content=json.dumps(body),
                       headers={"Authorization": f"Bearer {key['key']}",
                                "Content-Type": "application/json"}, timeout=10)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "nesting_too_deep"
    assert _held(billing, key["id"]) == (0, 0)
    assert upstream.emu.received == [] and billing.rows() == []
    assert billing.chat(key["key"]).status_code == 200  # the key is not jammed


def _leave_early(url: str, key: str, stream: bool, arrived: Callable[[], object]) -> None:
    """Send a request and hang up once `arrived()` (the upstream has it), before its answer
    starts."""
    host, port = url.removeprefix("http://").split(":")
    body = orjson.dumps({"model": "deepseek-chat", "stream": stream,
                         "messages": [{"role": "user", "content": "hi"}]})
    with socket.create_connection((host, int(port))) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  + f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                  + body)
        wait_until(arrived, what="the request to reach the upstream")


@pytest.mark.parametrize("stream", [False, True])
def test_a_client_that_leaves_before_the_answer_gives_everything_back(billing, upstream, stream):
    upstream.emu.default = Behavior(first_byte_delay=1.0)
    key = billing.create_key(balance="1", max_concurrency=1)
    _leave_early(billing.gw.url, key["key"], stream, lambda: upstream.emu.received)
    _wait_released(billing, key["id"])
    [row] = billing.rows()
    assert row["status"] == "error" and row["cost"] == "0"
    assert row["error"] == "the client went away"


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("junk", [b'{"choices": ["x", 1, {"message": 5}], "usage": [1]}',
                                  b'["usage", {"choices": null}]', b'{"usage": "lots"}'])
def test_an_upstream_answering_junk_still_settles(billing, upstream, stream, junk):
    upstream.emu.default = Behavior(raw_answer=junk)
    key = billing.create_key(balance="1", max_concurrency=1)
    r = billing.chat(key["key"], stream=stream)
    assert r.status_code in (200, 503), r.text  # relayed as it came, or refused as unusable
    _wait_released(billing, key["id"])
    assert len(billing.rows()) == 1
    assert billing.chat(key["key"], stream=stream).status_code in (200, 503)


def test_an_upstream_reporting_absurd_usage_cannot_jam_the_ledger(billing, upstream):
    upstream.emu.default = Behavior(completion_padding=10**18)
    key = billing.create_key()  # postpaid: charged what was reported, within bounds
    assert billing.chat(key["key"]).status_code == 200
    [row] = billing.rows()
    assert row["completion_tokens"] == 1_000_000_000
    upstream.emu.default = Behavior()
    assert billing.chat(key["key"]).status_code == 200
    assert len(billing.rows()) == 2  # later rows still reach SQL


# ---- property: no body gives a 5xx, and every counter comes back to zero --------------------

_scalars = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) \
    | st.text(max_size=20)
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=30)
_message = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system", "assistant", "tool", "nobody"]) | _scalars,
     "content": st.text(max_size=40) | _json})
_field_values = {
    "model": st.just("deepseek-chat") | _scalars,
    "messages": st.lists(_message, max_size=3) | _json,
    "max_tokens": st.integers(-5, 100_000) | _scalars,
    "n": st.integers(-1, 200) | _scalars,
    "stream": st.booleans() | _scalars,
    "stream_options": st.fixed_dictionaries({"include_usage": _scalars}) | _json,
    "temperature": st.floats(-1, 3, allow_nan=False) | _scalars,
    "stop": st.lists(st.text(max_size=5), max_size=3) | _scalars,
    "logprobs": _scalars, "tools": _json, "response_format": _json,
}
_bodies = st.fixed_dictionaries({}, optional=_field_values) \
    | st.builds(lambda d: _nested(d), st.integers(60, 400)) | _json


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=_bodies)
def test_no_body_gives_a_5xx_or_leaves_anything_held(prop_billing, body):
    billing, key = prop_billing
    r = httpx.post(billing.gw.url + "/v1/chat/completions", content=json.dumps(body),
                   headers={"Authorization": f"Bearer {key['key']}",
                            "Content-Type": "application/json"}, timeout=20)
    assert r.status_code < 500, (r.status_code, r.text)
    if r.status_code >= 400:
        assert isinstance(r.json()["error"]["message"], str)
    _wait_released(billing, key["id"])


@pytest.fixture
def prop_billing(billing, upstream):
    upstream.emu.default = Behavior(honour_n=True)
    return billing, billing.create_key(balance="1000", max_concurrency=1)


def test_an_interrupted_relay_gives_the_slot_back(billing, upstream):
    upstream.emu.default = Behavior(chunks=20, chunk_delay=0.05)
    key = billing.create_key(balance="1", max_concurrency=1)

    async def read_a_little() -> None:
        async with httpx.AsyncClient(timeout=10) as c, c.stream(
                "POST", billing.gw.url + "/v1/chat/completions",
                headers={"Authorization": f"Bearer {key['key']}"},
                json={"model": "deepseek-chat", "stream": True,
                      "messages": [{"role": "user", "content": " ".join(["w"] * 40)}]}) as r:
            async for _ in r.aiter_bytes():
                break

    asyncio.run(read_a_little())
    _wait_released(billing, key["id"])
    [row] = billing.rows()
    assert row["status"] in ("incomplete", "error")
