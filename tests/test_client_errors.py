"""What a client sees when its request is wrong: the upstream's own 4xx, relayed as it is,
never a deployment's name; typed fields of the wrong JSON type refused before anything is
billed or forwarded."""

from __future__ import annotations

import httpx
import openai
import pytest

from manxue.testing.deepseek_emulator import Behavior
from tests.helpers import deployment


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_400_is_relayed_as_it_is(make_gateway, upstream, stream):
    gw = make_gateway([deployment(upstream, "secret-vendor-eu", upstream_model="ds-v3-internal",
                                  api_key="sk-upstream-secret")])
    upstream.emu.push(Behavior(
        status=400, error_type="invalid_request_error", error_code="context_length_exceeded",
        error_param="messages",
        error_message="ds-v3-internal: maximum context length is 65536 tokens (key sk-upstream-secret, "
                      f"{upstream.url})"))
    r = httpx.post(gw.url + "/v1/chat/completions", timeout=10, json={
        "model": "deepseek-chat", "stream": stream, "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["code"] == "context_length_exceeded"
    assert err["param"] == "messages"
    assert err["message"].startswith("deepseek-chat: maximum context length is 65536 tokens")
    for secret in ("secret-vendor-eu", "ds-v3-internal", "sk-upstream-secret", upstream.url,
                   "deployment", "upstream answered"):
        assert secret not in r.text
    assert len(upstream.emu.received) == 1  # the request itself is wrong: not retried elsewhere


def test_the_sdk_raises_the_upstreams_error(gateway, upstream):
    upstream.emu.push(Behavior(status=422, error_type="invalid_request_error",
                               error_message="Invalid top_logprobs", error_code="invalid_value"))
    with pytest.raises(openai.UnprocessableEntityError) as info:
        gateway.client().chat.completions.create(
            model="deepseek-chat", messages=[{"role": "user", "content": "x"}])
    assert info.value.body["message"] == "Invalid top_logprobs"  # type: ignore[index]
    assert info.value.code == "invalid_value"


def test_a_4xx_without_an_error_object_names_nobody(make_gateway, upstream):
    gw = make_gateway([deployment(upstream, "vendor-x")])
    upstream.emu.push(Behavior(status=413, raw_answer=b"<html>vendor-x proxy: too large</html>"))
    r = httpx.post(gw.url + "/v1/chat/completions", timeout=10, json={
        "model": "deepseek-chat", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 413
    assert r.json()["error"] == {"message": "the model's server answered HTTP 413",
                                 "type": "upstream_error", "param": None, "code": "upstream_error"}


@pytest.mark.parametrize(("field", "value"), [
    ("max_tokens", "100"), ("stream", "yes"), ("n", "2"), ("temperature", "0.5"),
    ("max_tokens", 10.5), ("stream", 1), ("logprobs", "true"),
])
def test_typed_fields_take_only_their_json_type(gateway, upstream, field, value):
    r = httpx.post(gateway.url + "/v1/chat/completions", timeout=10, json={
        "model": "deepseek-chat", "messages": [{"role": "user", "content": "x"}], field: value})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["param"] == field
    assert upstream.emu.received == []


def test_numbers_of_the_right_type_still_pass(gateway, upstream):
    r = httpx.post(gateway.url + "/v1/chat/completions", timeout=10, json={
        "model": "deepseek-chat", "messages": [{"role": "user", "content": "x"}],
        "temperature": 1, "top_p": 0.5, "max_tokens": 20, "stream": False})
    assert r.status_code == 200, r.text


def test_an_unknown_path_lists_the_routes_that_exist(gateway):
    r = httpx.post(gateway.url + "/v1/nothing-here", json={}, timeout=10)
    assert r.status_code == 404
    message = r.json()["error"]["message"]
    assert message.startswith("no route for POST /v1/nothing-here; the API's routes: ")
    for route in ("POST /v1/chat/completions", "GET /v1/models", "POST /v1/messages",
                  "GET /user/balance"):
        assert route in message
    assert "/admin" not in message
    r = httpx.get(gateway.url + "/anthropic/v1/nothing", timeout=10)
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
