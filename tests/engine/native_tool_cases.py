"""What every native tool format's tests check through the gateway, and the tool history
they render: the formats differ in their text, not in what a client sees."""

from __future__ import annotations

import json
from typing import Any

import openai

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}},
                   "required": ["city"]}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "Local time in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}},
                   "required": ["city"]}}}
NAMES = ("get_weather", "get_time")
SMALL = {"n_ctx": 2048, "n_parallel": 2, "max_queue": 0, "n_threads": 1}
HISTORY: list[dict[str, Any]] = [
    {"role": "user", "content": "Weather in Oslo?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "4 C, rain"}]


def check_forced_calls(client: openai.OpenAI, max_tokens: int = 64) -> None:
    """`required` gives a valid call of one of the tools; a named function, streamed or not,
    gives a valid call of that one."""
    out = client.chat.completions.create(
        model="agent", messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER, TIME], tool_choice="required", max_tokens=max_tokens, temperature=0)
    choice = out.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
    call = choice.message.tool_calls[0]
    assert call.function.name in NAMES
    assert isinstance(json.loads(call.function.arguments)["city"], str)
    named = {"type": "function", "function": {"name": "get_time"}}
    ask = [{"role": "user", "content": "What time is it in Lima?"}]
    whole = client.chat.completions.create(model="agent", messages=ask, tools=[WEATHER, TIME],
                                           tool_choice=named, max_tokens=max_tokens, temperature=0)
    assert whole.choices[0].message.tool_calls
    assert whole.choices[0].message.tool_calls[0].function.name == "get_time"
    streamed = client.chat.completions.create(model="agent", messages=ask, tools=[WEATHER, TIME],
                                              tool_choice=named, max_tokens=max_tokens,
                                              temperature=0, stream=True)
    calls = [c for ch in streamed for c in (ch.choices[0].delta.tool_calls or []) if ch.choices]
    assert calls and calls[0].function is not None and calls[0].function.name == "get_time"
    assert isinstance(json.loads(calls[0].function.arguments or "{}")["city"], str)
