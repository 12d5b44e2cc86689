"""The OpenAI/DeepSeek API surface, through the official openai SDK and raw HTTP."""

from __future__ import annotations

import httpx
import openai
import orjson

from manxue.testing.deepseek_emulator import Behavior
from tests.helpers import deployment

MSG = [{"role": "user", "content": "hello there"}]


def test_models_health_ready(gateway):
    c = gateway.client()
    assert [m.id for m in c.models.list()] == ["deepseek-chat"]
    assert c.models.retrieve("deepseek-chat").id == "deepseek-chat"
    assert httpx.get(gateway.url + "/health").json() == {"status": "ok"}
    ready = httpx.get(gateway.url + "/ready")
    assert ready.status_code == 200
    assert ready.json()["deployments"]["primary"]["breaker"] == "closed"


def test_non_streaming_round_trip(gateway, upstream):
    r = gateway.client().chat.completions.create(model="deepseek-chat", messages=MSG)
    assert r.choices[0].message.content == "You said: hello there"
    assert r.usage is not None and r.usage.prompt_tokens > 0
    assert "Authorization" not in upstream.emu.received[0].headers  # no key configured


def test_streaming_with_sdk_helpers(gateway):
    c = gateway.client()
    with c.chat.completions.stream(model="deepseek-chat", messages=MSG) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    assert final.choices[0].message.content == "You said: hello there"


def test_unknown_fields_are_forwarded_and_model_rewritten(make_gateway, upstream):
    gw = make_gateway([deployment(upstream, "a", model="chat", upstream_model="deepseek-v4-flash")])
    gw.client().chat.completions.create(
        model="chat", messages=MSG, extra_body={"thinking": {"type": "enabled"}, "user_id": "u1"},
        temperature=0.3)
    got = upstream.emu.received[-1].body
    assert got["model"] == "deepseek-v4-flash"
    assert got["thinking"] == {"type": "enabled"} and got["user_id"] == "u1"
    assert got["temperature"] == 0.3


def test_reasoning_content_and_cache_usage_pass_through(gateway, upstream):
    b = Behavior(reasoning="first think hard", cache_hit_tokens=3)
    upstream.emu.push(b, b)
    c = gateway.client()
    r = c.chat.completions.create(model="deepseek-chat", messages=MSG)
    assert r.choices[0].message.reasoning_content == "first think hard"  # type: ignore[attr-defined]
    u = r.usage.model_dump()
    assert u["prompt_cache_hit_tokens"] == 3
    assert u["prompt_cache_hit_tokens"] + u["prompt_cache_miss_tokens"] == u["prompt_tokens"]
    assert u["completion_tokens_details"]["reasoning_tokens"] == 3

    stream = c.chat.completions.create(model="deepseek-chat", messages=MSG, stream=True,
                                       stream_options={"include_usage": True})
    reasoning, usage = "", None
    for ch in stream:
        if ch.choices:
            reasoning += getattr(ch.choices[0].delta, "reasoning_content", None) or ""
        if ch.usage:
            usage = ch.usage.model_dump()
    assert reasoning == "first think hard"
    assert usage is not None and usage["prompt_cache_hit_tokens"] == 3


def test_usage_chunk_only_when_asked_but_always_requested_upstream(gateway, upstream):
    c = gateway.client()
    chunks = list(c.chat.completions.create(model="deepseek-chat", messages=MSG, stream=True))
    assert all(ch.usage is None for ch in chunks)
    assert upstream.emu.received[-1].body["stream_options"] == {"include_usage": True}
    chunks = list(c.chat.completions.create(model="deepseek-chat", messages=MSG, stream=True,
                                            stream_options={"include_usage": True}))
    assert chunks[-1].usage is not None and chunks[-1].choices == []


def test_deepseek_base_url_without_v1(gateway):
    c = openai.OpenAI(base_url=gateway.url, api_key="k", max_retries=0)
    r = c.chat.completions.create(model="deepseek-chat", messages=MSG)
    assert r.choices[0].message.content


def test_keepalive_comments_tolerated_and_relayed(make_gateway, upstream):
    gw = make_gateway([deployment(upstream, "a")], router={"keepalive_interval": 0.2})
    upstream.emu.push(Behavior(first_byte_delay=0.7, keepalive_every=0.1))
    body = {"model": "deepseek-chat", "messages": MSG, "stream": True}
    with httpx.stream("POST", gw.url + "/v1/chat/completions", json=body, timeout=10) as r:
        raw = b"".join(r.iter_bytes())
    assert raw.startswith(b": keep-alive\n\n")
    assert raw.count(b": keep-alive") >= 3
    assert raw.rstrip().endswith(b"data: [DONE]")
    # the SDK ignores the comments
    upstream.emu.push(Behavior(first_byte_delay=0.3, keepalive_every=0.05))
    text = "".join(ch.choices[0].delta.content or "" for ch in gw.client().chat.completions.create(
        model="deepseek-chat", messages=MSG, stream=True) if ch.choices)
    assert text == "You said: hello there"


def test_blank_lines_before_non_streaming_body(gateway, upstream):
    upstream.emu.push(Behavior(first_byte_delay=0.3, keepalive_every=0.05))
    r = gateway.client().chat.completions.create(model="deepseek-chat", messages=MSG)
    assert r.choices[0].message.content == "You said: hello there"


def test_metrics_exposed(gateway):
    c = gateway.client()
    c.chat.completions.create(model="deepseek-chat", messages=MSG)
    list(c.chat.completions.create(model="deepseek-chat", messages=MSG, stream=True))
    text = httpx.get(gateway.url + "/metrics").text
    assert 'manxue_requests_total{route="/v1/chat/completions",status="200"} 2.0' in text
    assert "manxue_request_seconds_bucket" in text
    assert 'manxue_breaker_state{deployment="primary"} 0.0' in text
    assert 'manxue_tokens_total{kind="prompt",model="deepseek-chat"}' in text


def test_request_ids_are_the_gateways_and_the_clients_id_is_echoed(gateway):
    url = gateway.url + "/v1/chat/completions"
    body = {"model": "deepseek-chat", "messages": MSG}
    a = httpx.post(url, headers={"X-Client-Request-Id": "abc123"}, json=body)
    b = httpx.post(url, headers={"X-Request-Id": "abc123"}, json=body)  # as older clients send it
    assert a.headers["X-Client-Request-Id"] == b.headers["X-Client-Request-Id"] == "abc123"
    assert a.headers["X-Request-Id"] != b.headers["X-Request-Id"]  # never the client's: unique
    assert "abc123" not in a.headers["X-Request-Id"]
    assert orjson.loads(a.content)["object"] == "chat.completion"
    s = httpx.post(url, headers={"X-Client-Request-Id": "s-1"}, json={**body, "stream": True})
    assert s.headers["X-Client-Request-Id"] == "s-1" and s.headers["X-Request-Id"]


def test_a_malformed_client_request_id_is_a_400(gateway):
    r = httpx.post(gateway.url + "/v1/chat/completions", headers={"X-Client-Request-Id": "x" * 201},
                   json={"model": "deepseek-chat", "messages": MSG})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_client_request_id"
