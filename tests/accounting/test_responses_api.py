"""OpenAI's Responses API with the official SDK: text and items as input, instructions,
streamed events, function tools both ways, previous_response_id over stored answers (per key,
in the database), store: false, and the same bill as chat for the same answer."""

from __future__ import annotations

import httpx
import openai
import pytest

from manxue.testing.deepseek_emulator import Behavior
from tests.helpers import UsageRecorder

TOOL = {"type": "function", "name": "get_weather", "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}



def test_a_whole_answer_with_instructions_and_usage(gateway, upstream):
    upstream.emu.push(Behavior(content="Hi there.", cache_hit_tokens=2, reasoning="greet back"))
    r = gateway.client().responses.create(model="deepseek-chat", instructions="Be brief.",
                                          input="Hello", max_output_tokens=50)
    assert r.object == "response" and r.status == "completed" and r.id.startswith("resp_")
    assert r.output_text == "Hi there."
    assert [o.type for o in r.output] == ["reasoning", "message"]
    assert r.usage is not None and r.usage.input_tokens_details.cached_tokens == 2
    assert r.usage.output_tokens_details.reasoning_tokens == 2
    sent = upstream.emu.received[-1].body
    assert sent["messages"] == [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "Hello"}]
    assert sent["max_tokens"] == 50


def test_streamed_events_end_in_the_whole_response(gateway, upstream):
    upstream.emu.push(Behavior(content="one two three"))
    with gateway.client().responses.stream(model="deepseek-chat", input="count") as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_response()
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert "response.output_text.delta" in kinds and "response.output_item.done" in kinds
    assert final.output_text == "one two three" and final.usage is not None
    seqs = []
    with httpx.stream("POST", gateway.url + "/v1/responses", timeout=20,
                      json={"model": "deepseek-chat", "input": "x", "stream": True}) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                seqs.append(httpx.Response(200, content=line[6:]).json()["sequence_number"])
    assert seqs == list(range(len(seqs)))


def test_function_tools_round_trip_with_previous_response_id(gateway, upstream):
    c = gateway.client()
    upstream.emu.push(Behavior(content="", tool_calls=(("get_weather", '{"city":"Paris"}'),)))
    first = c.responses.create(model="deepseek-chat", input="Weather in Paris?", tools=[TOOL])  # type: ignore[list-item]
    [call] = [o for o in first.output if o.type == "function_call"]
    assert call.name == "get_weather" and call.arguments == '{"city":"Paris"}'
    assert upstream.emu.received[-1].body["tools"][0]["function"]["name"] == "get_weather"
    upstream.emu.push(Behavior(content="Sunny in Paris."))
    second = c.responses.create(model="deepseek-chat", previous_response_id=first.id,
                                tools=[TOOL],  # type: ignore[list-item]
                                input=[{"type": "function_call_output", "call_id": call.call_id,
                                        "output": "sunny, 21 C"}])
    assert second.output_text == "Sunny in Paris." and second.previous_response_id == first.id
    sent = upstream.emu.received[-1].body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool"]
    assert sent[1]["tool_calls"][0]["id"] == call.call_id
    assert sent[2] == {"role": "tool", "tool_call_id": call.call_id, "content": "sunny, 21 C"}
    got = c.responses.retrieve(second.id)
    assert got.output_text == "Sunny in Paris."


def test_streamed_tool_calls_and_stored_streams(gateway, upstream):
    c = gateway.client()
    upstream.emu.push(Behavior(content="", tool_calls=(("get_weather", '{"city":"Rome"}'),)))
    with c.responses.stream(model="deepseek-chat", input="Rome?", tools=[TOOL]) as s:  # type: ignore[list-item]
        kinds = [e.type for e in s]
        final = s.get_final_response()
    assert "response.function_call_arguments.delta" in kinds
    [call] = [o for o in final.output if o.type == "function_call"]
    assert call.arguments == '{"city":"Rome"}'
    assert c.responses.retrieve(final.id).id == final.id


def test_a_stream_broken_midway_fails_settles_and_stores_nothing(gateway, upstream):
    """The upstream drops after two pieces: the client gets response.failed holding the text
    that came, the request settles as not completed, and nothing is stored to continue."""
    rec = UsageRecorder.on(gateway)
    upstream.emu.push(Behavior(chunks=6, content="one two three four five six", drop_after=2))
    events = []
    with httpx.stream("POST", gateway.url + "/v1/responses", timeout=20,
                      json={"model": "deepseek-chat", "input": "count", "stream": True}) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                events.append(httpx.Response(200, content=line[6:]).json())
    failed = events[-1]
    assert failed["type"] == "response.failed" and failed["response"]["status"] == "failed"
    [message] = failed["response"]["output"]
    assert message["status"] == "in_progress" and message["content"][0]["text"]
    assert "response.completed" not in [e["type"] for e in events]
    assert rec.outcomes and not rec.outcomes[-1].completed
    stored = httpx.get(gateway.url + "/v1/responses/" + failed["response"]["id"], timeout=10)
    assert stored.status_code == 404


def test_store_false_and_other_keys_cannot_continue(gateway, upstream):
    c = gateway.client()
    kept = c.responses.create(model="deepseek-chat", input="remember me")
    gone = c.responses.create(model="deepseek-chat", input="forget me", store=False)
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(gone.id)
    with pytest.raises(openai.NotFoundError):
        c.responses.create(model="deepseek-chat", input="x", previous_response_id=gone.id)
    c.responses.delete(kept.id)
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(kept.id)


@pytest.mark.parametrize(("body", "param"), [
    ({"model": "deepseek-chat"}, "input"),
    ({"model": "deepseek-chat", "input": []}, "input"),
    ({"model": "deepseek-chat", "input": [{"type": "computer_call"}]}, "input[0].type"),
    ({"model": "deepseek-chat", "input": "x", "tools": [{"type": "web_search"}]}, "tools[0]"),
    ({"model": "deepseek-chat", "input": "x", "previous_response_id": 7}, "previous_response_id"),
])
def test_bad_requests_name_the_field(gateway, body, param):
    r = httpx.post(gateway.url + "/v1/responses", json=body, timeout=10)
    assert r.status_code in (400, 422), r.text
    assert r.json()["error"]["param"] == param


def test_the_same_answer_bills_the_same_as_chat(gateway, upstream):
    rec = UsageRecorder.on(gateway)
    b = Behavior(content="same answer", cache_hit_tokens=1)
    upstream.emu.push(b, b, b)
    c = gateway.client()
    c.chat.completions.create(model="deepseek-chat", messages=[{"role": "user", "content": "q"}])
    c.responses.create(model="deepseek-chat", input="q")
    with c.responses.stream(model="deepseek-chat", input="q") as s:
        s.until_done()
    chat, whole, streamed = rec.outcomes
    assert chat.usage == whole.usage == streamed.usage and streamed.completed


def test_stored_responses_belong_to_their_key(billing, upstream):
    a, b = billing.create_key(name="a")["key"], billing.create_key(name="b")["key"]
    ca, cb = billing.gw.client(api_key=a), billing.gw.client(api_key=b)
    mine = ca.responses.create(model="deepseek-chat", input="secret plans")
    assert ca.responses.retrieve(mine.id).id == mine.id
    with pytest.raises(openai.NotFoundError):
        cb.responses.retrieve(mine.id)
    with pytest.raises(openai.NotFoundError):
        cb.responses.create(model="deepseek-chat", input="go on", previous_response_id=mine.id)
    with pytest.raises(openai.NotFoundError):
        cb.responses.delete(mine.id)
    assert ca.responses.retrieve(mine.id).output_text == mine.output_text


def test_a_continued_response_reserves_for_its_stored_history(billing, upstream):
    """previous_response_id makes the stored history part of the prompt: admission reserves
    for it, so a key cannot buy a long prompt at the price of a short body."""
    key = billing.create_key(name="prepaid", balance="0.06")["key"]
    c = billing.gw.client(api_key=key)
    upstream.emu.push(Behavior(content="ok"))
    long = c.responses.create(model="deepseek-chat", input="word " * 40000, max_output_tokens=1)
    with pytest.raises(openai.APIStatusError) as refused:
        c.responses.create(model="deepseek-chat", input="and then?", max_output_tokens=1,
                           previous_response_id=long.id)
    assert refused.value.status_code == 402
