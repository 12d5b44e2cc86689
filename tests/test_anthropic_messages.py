"""Anthropic's Messages API, driven by the official `anthropic` SDK against a gateway in front of
the DeepSeek emulator and against the local engine: plain and streamed answers, system blocks
with cache_control, tools both ways, thinking blocks from reasoning, count_tokens, errors in
Anthropic's shape, and the same bill as the chat route for the same answer."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import httpx
import pytest

from manxue.engine.default_model import default_model_path
from manxue.testing.deepseek_emulator import Behavior
from tests.helpers import UsageRecorder

SYSTEM = "You are a helpful assistant."
SMALL = {"n_ctx": 1024, "n_parallel": 1, "max_queue": 0, "n_threads": 1}
WEATHER = {"name": "get_weather", "description": "Weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                            "required": ["city"]}}



def _client(url: str, **kw: object) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key=str(kw.pop("api_key", "sk-test")),
                               max_retries=0, timeout=30)


@pytest.fixture
def client(gateway) -> anthropic.Anthropic:
    return _client(gateway.url + "/anthropic")


def test_a_plain_answer_with_usage_and_cache_reads(client, upstream):
    upstream.emu.push(Behavior(content="Paris is the capital.", cache_hit_tokens=3))
    msg = client.messages.create(model="deepseek-chat", max_tokens=64,
                                 system="Be brief.",
                                 messages=[{"role": "user", "content": "Capital of France?"}])
    assert msg.type == "message" and msg.role == "assistant" and msg.model == "deepseek-chat"
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].text == "Paris is the capital."  # type: ignore[union-attr]
    assert msg.stop_reason == "end_turn"
    sent = upstream.emu.received[-1].body
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["max_tokens"] == 64 and "stream_options" not in sent
    assert msg.usage.cache_read_input_tokens == 3
    assert msg.usage.output_tokens == 4
    assert msg.usage.input_tokens >= 1


def test_a_claude_code_style_streamed_request(client, upstream):
    """System blocks with cache_control, tools, streaming: the SDK's accumulated message."""
    upstream.emu.push(Behavior(content="Let me check the weather.", reasoning="user wants weather",
                               tool_calls=(("get_weather", '{"city": "Paris"}'),)))
    system = [{"type": "text", "text": "You are a coding agent.",
               "cache_control": {"type": "ephemeral"}},
              {"type": "text", "text": "Use tools when useful."}]
    with client.messages.stream(model="deepseek-chat", max_tokens=256, system=system,  # type: ignore[arg-type]
                                tools=[WEATHER],  # type: ignore[list-item]
                                messages=[{"role": "user", "content": [
                                    {"type": "text", "text": "Weather in Paris?",
                                     "cache_control": {"type": "ephemeral"}}]}]) as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "message_delta" in kinds
    assert [b.type for b in final.content] == ["thinking", "text", "tool_use"]
    assert final.content[0].thinking == "user wants weather"  # type: ignore[union-attr]
    assert final.content[1].text == "Let me check the weather."  # type: ignore[union-attr]
    tool = final.content[2]
    assert tool.type == "tool_use" and tool.name == "get_weather" and tool.input == {"city": "Paris"}
    assert final.stop_reason == "tool_use"
    assert final.usage.output_tokens > 0 and final.usage.input_tokens > 0
    sent = upstream.emu.received[-1].body
    assert sent["messages"][0] == {"role": "system",
                                   "content": "You are a coding agent.\nUse tools when useful."}
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    assert sent["tools"][0]["function"]["parameters"] == WEATHER["input_schema"]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


def test_tool_results_go_back_as_tool_messages(client, upstream):
    upstream.emu.push(Behavior(content="It is sunny in Paris."))
    msg = client.messages.create(
        model="deepseek-chat", max_tokens=64, tools=[WEATHER],  # type: ignore[list-item]
        tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "call it", "signature": "x"},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                 "input": {"city": "Paris"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny, 21 C"},
                {"type": "text", "text": "Summarise."}]},
        ])
    assert msg.content[0].text == "It is sunny in Paris."  # type: ignore[union-attr]
    sent = upstream.emu.received[-1].body
    roles = [m["role"] for m in sent["messages"]]
    assert roles == ["user", "assistant", "tool", "user"]
    call = sent["messages"][1]["tool_calls"][0]
    assert call["id"] == "toolu_1" and call["function"]["arguments"] == '{"city":"Paris"}'
    assert sent["messages"][2] == {"role": "tool", "tool_call_id": "toolu_1",
                                   "content": "sunny, 21 C"}
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert sent["parallel_tool_calls"] is False


def test_both_base_urls_and_x_api_key(gateway, upstream):
    for base in (gateway.url, gateway.url + "/anthropic"):
        upstream.emu.push(Behavior(content="ok"))
        r = httpx.post(base + "/v1/messages", headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
                       json={"model": "deepseek-chat", "max_tokens": 8,
                             "messages": [{"role": "user", "content": "hi"}]}, timeout=20)
        assert r.status_code == 200, r.text
        assert r.json()["content"] == [{"type": "text", "text": "ok"}]


def test_errors_have_anthropics_shape(client, gateway, upstream):
    with pytest.raises(anthropic.NotFoundError) as nf:
        client.messages.create(model="no-such-model", max_tokens=8,
                               messages=[{"role": "user", "content": "hi"}])
    assert nf.value.body["type"] == "error"  # type: ignore[index]
    assert nf.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    for body, needle in [
        ({"model": "deepseek-chat", "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
        ({"model": "deepseek-chat", "max_tokens": 8, "messages": []}, "messages"),
        ({"model": "deepseek-chat", "max_tokens": 8,
          "messages": [{"role": "system", "content": "x"}]}, "system"),
        ({"model": "deepseek-chat", "max_tokens": 8, "messages": [{"role": "user", "content": [
            {"type": "document", "source": {}}]}]}, "document"),
        ({"model": "deepseek-chat", "max_tokens": 8, "tools": [{"type": "web_search_20250305",
                                                                 "name": "web_search"}],
          "messages": [{"role": "user", "content": "x"}]}, "server tools"),
    ]:
        r = httpx.post(gateway.url + "/anthropic/v1/messages", json=body, timeout=20)
        assert r.status_code in (400, 422), r.text
        err = r.json()
        assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error"
        assert needle in err["error"]["message"]
    r = httpx.post(gateway.url + "/v1/messages", content=b"{not json", timeout=20)
    assert r.status_code == 400 and r.json()["type"] == "error"
    upstream.emu.default = Behavior(status=503)  # every retry too
    with pytest.raises(anthropic.APIStatusError) as busy:
        client.messages.create(model="deepseek-chat", max_tokens=8,
                               messages=[{"role": "user", "content": "hi"}])
    assert busy.value.status_code == 503
    assert busy.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]


def test_a_stream_broken_midway_ends_with_an_error_event(client, upstream):
    """The SDK raises on Anthropic's `error` event, after the text that did arrive."""
    upstream.emu.push(Behavior(chunks=6, content="one two three four five six", drop_after=2))
    seen: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as broke:
        for e in client.messages.create(model="deepseek-chat", max_tokens=64, stream=True,
                                        messages=[{"role": "user", "content": "count"}]):
            seen.append(e.type)
    assert seen[0] == "message_start" and "content_block_delta" in seen
    assert "message_stop" not in seen
    assert "broke off" in str(broke.value)


def test_the_same_answer_bills_the_same_through_chat_and_messages(gateway, upstream):
    rec = UsageRecorder.on(gateway)
    b = Behavior(content="same answer here", cache_hit_tokens=2)
    upstream.emu.push(b, b, b)
    msgs = [{"role": "user", "content": "same question"}]
    gateway.client().chat.completions.create(model="deepseek-chat", messages=msgs, max_tokens=32)  # type: ignore[arg-type]
    _client(gateway.url).messages.create(model="deepseek-chat", max_tokens=32, messages=msgs)  # type: ignore[arg-type]
    with _client(gateway.url).messages.stream(model="deepseek-chat", max_tokens=32,
                                              messages=msgs) as s:  # type: ignore[arg-type]
        s.until_done()
    chat, messages, streamed = rec.outcomes
    assert chat.usage == messages.usage == streamed.usage
    assert chat.completed and messages.completed and streamed.completed


def test_count_tokens_offline_for_an_upstream_model(client):
    small = client.messages.count_tokens(model="deepseek-chat",
                                         messages=[{"role": "user", "content": "hi"}])
    large = client.messages.count_tokens(model="deepseek-chat", system="Be brief.",
                                         messages=[{"role": "user", "content": "hi " * 50}])
    assert 1 <= small.input_tokens < large.input_tokens
    with pytest.raises(anthropic.NotFoundError):
        client.messages.count_tokens(model="nope", messages=[{"role": "user", "content": "x"}])


@pytest.fixture(scope="module")
def local_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from manxue.server.app import build_app
    from manxue.settings import settings_from_dict
    from manxue.testing.loopback import LoopbackServer

    settings = settings_from_dict({
        "data_dir": str(tmp_path_factory.mktemp("anthropic-local")),
        "deployments": [{"name": "edge", "model": "smollm2", "kind": "local",
                         "path": str(default_model_path()), "options": SMALL}]})
    with LoopbackServer(build_app(settings)) as srv:
        yield srv.url


def test_the_local_engine_answers_messages_plain_and_streamed(local_url):
    client = _client(local_url + "/anthropic")
    ask = [{"role": "user", "content": "What is the capital of France?"}]
    msg = client.messages.create(model="smollm2", max_tokens=12, messages=ask,  # type: ignore[arg-type]
                                 system=SYSTEM, extra_body={"temperature": 0})
    assert "Paris" in msg.content[0].text  # type: ignore[union-attr]
    assert msg.stop_reason in ("end_turn", "max_tokens") and msg.usage.output_tokens >= 1
    with client.messages.stream(model="smollm2", max_tokens=12, messages=ask,  # type: ignore[arg-type]
                                system=SYSTEM, extra_body={"temperature": 0}) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == msg.content[0].text  # type: ignore[union-attr]
    assert final.usage.output_tokens == msg.usage.output_tokens
    assert final.usage.input_tokens + (final.usage.cache_read_input_tokens or 0) == \
        msg.usage.input_tokens + (msg.usage.cache_read_input_tokens or 0)
    counted = client.messages.count_tokens(model="smollm2", messages=ask, system=SYSTEM)  # type: ignore[arg-type]
    assert counted.input_tokens == msg.usage.input_tokens + (msg.usage.cache_read_input_tokens or 0)
