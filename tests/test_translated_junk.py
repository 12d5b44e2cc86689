"""An upstream that answers junk shaped as JSON: Messages and Responses, whole and streamed,
answer with a clear error or a well-formed stream, never a 500, and every request settles."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from manxue.errors import UpstreamError
from manxue.protocol import anthropic, responses, responses_stream
from manxue.testing.deepseek_emulator import Behavior
from tests.helpers import UsageRecorder

JUNK = [b'{"choices": ["x", 1, {"message": 5}], "usage": [1]}',
        b'{"choices": [{"message": {"content": ["a"], "tool_calls": [1, {"function": 2}]},'
        b' "finish_reason": ["stop"]}], "usage": {"prompt_tokens": "many"}}',
        b'{"choices": "abc", "usage": "lots"}',
        b'{"choices": [{"index": 0, "delta": {"content": 5, "reasoning_content": [1],'
        b' "tool_calls": {"x": 1}}, "finish_reason": {}}]}']
ROUTES = {"messages": ("/v1/messages", {"model": "deepseek-chat", "max_tokens": 16,
                                        "messages": [{"role": "user", "content": "hi"}]}),
          "responses": ("/v1/responses", {"model": "deepseek-chat", "input": "hi",
                                          "store": False})}


def _events(body: bytes) -> list[dict[str, Any]]:
    """Every event of a stream, each required to be one line of JSON after `data: `."""
    out = []
    for event in body.split(b"\n\n"):
        if event.strip():
            data = [line for line in event.split(b"\n") if line.startswith(b"data: ")]
            assert len(data) == 1, event
            out.append(orjson.loads(data[0][6:]))
    return out


@pytest.mark.parametrize("junk", JUNK, ids=["odd choices", "odd fields", "odd types", "a delta"])
@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_junk_gets_a_clear_answer_and_settles(gateway, upstream, route, junk, stream):
    rec = UsageRecorder.on(gateway)
    upstream.emu.default = Behavior(raw_answer=junk)
    path, body = ROUTES[route]
    r = httpx.post(gateway.url + path, json={**body, "stream": stream}, timeout=20)
    if stream:
        assert r.status_code == 200, r.text
        events = _events(r.content)
        assert events and events[-1]["type"] in ("message_stop", "response.completed")
    elif b'"message": {' in junk:  # a message object, its fields junk: taken where they fit
        assert r.status_code == 200, r.text
        assert r.json()["usage"]
    else:
        assert r.status_code == 502, r.text
        err = r.json()
        assert "not a chat completion" in str(err)
        if route == "messages":
            assert err["type"] == "error" and err["error"]["type"] == "api_error"
    assert len(rec.outcomes) == 1  # settled once, whatever came


_JSON = st.recursive(st.none() | st.booleans() | st.integers(-2, 2) | st.text(max_size=3),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.sampled_from(["choices", "delta", "index", "content",
                                                        "reasoning_content", "tool_calls",
                                                        "function", "arguments", "name", "id",
                                                        "finish_reason", "usage", "message",
                                                        "prompt_tokens"]), inner, max_size=4),
                     max_leaves=12)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(chunks=st.lists(_JSON, max_size=5))
def test_no_json_an_upstream_sends_breaks_a_translator(chunks: list[Any]):
    """Whatever JSON a chunk or a whole answer holds, the translators write well-formed
    events, or refuse a whole answer with the upstream's error."""
    lines = [b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks] + [b"data: [DONE]\n\n"]
    for stream in (anthropic.MessagesStream("m"), responses_stream.ResponsesStream("resp_1", {}, "m")):
        written = b"".join(e for line in lines for e in stream.feed(line))
        assert _events(written)
    for chunk in chunks:
        if isinstance(chunk, dict):
            for translate in (lambda d: anthropic.from_chat(d, "m"),
                              lambda d: responses.Answer.of_chat(d)):
                try:
                    orjson.dumps(translate(chunk))
                except UpstreamError as exc:
                    assert exc.status == 502


def _deep(levels: int) -> bytes:
    """JSON nested `levels` deep: readable, but deeper than an encoder or str() may go."""
    return b'{"a":' * levels + b"1" + b"}" * levels


DEEP_CALL = (b'{"choices":[{"message":{"tool_calls":[{"id":"c","function":{"name":"f",'
             b'"arguments":%s}}]},"finish_reason":"tool_calls"}]}')


@pytest.mark.parametrize("arguments", [_deep(300), orjson.dumps(_deep(300).decode())],
                         ids=["an object", "a string"])
@pytest.mark.parametrize("route", list(ROUTES))
def test_tool_arguments_nested_too_deep_to_send_on(gateway, upstream, route, arguments):
    upstream.emu.default = Behavior(raw_answer=DEEP_CALL % arguments)
    path, body = ROUTES[route]
    r = httpx.post(gateway.url + path, json=body, timeout=20)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("route", ["chat", *ROUTES])
def test_an_error_message_nested_too_deep_to_show(gateway, upstream, route):
    deep = b'[' * 1000 + b']' * 1000
    if route == "chat":
        path, body = "/v1/chat/completions", {"model": "deepseek-chat",
                                               "messages": [{"role": "user", "content": "hi"}]}
        event = b'{"error":{"message":%s}}' % deep  # read by the provider
    else:
        path, body = ROUTES[route]
        event = b'{"id":"x","error":{"message":%s,"code":%s}}' % (deep, deep)  # by the translator
    upstream.emu.default = Behavior(raw_answer=event)
    r = httpx.post(gateway.url + path, json={**body, "stream": True}, timeout=20)
    assert r.status_code in (200, 502, 503), r.text  # relayed, or refused as unusable: no 500
    if r.status_code == 200 and route != "chat":
        assert _events(r.content)[-1]["type"] in ("error", "response.failed")
    upstream.emu.default = Behavior(status=400, raw_answer=b'{"error":{"message":%s}}' % deep)
    r = httpx.post(gateway.url + path, json=body, timeout=20)
    assert r.status_code == 400, r.text
