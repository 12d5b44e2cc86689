"""What every native tool format's tests check through the gateway, and the tool history
they render: the formats differ in their text, not in what a client sees."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
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


def feed_all(buf: Any, pieces: list[str]) -> str:
    """What a ToolCallBuffer streams of `pieces`, one piece at a time."""
    return "".join(buf.feed(p, [])[0] for p in pieces)


def check_text_then_calls(fmt: str, block: str) -> None:
    """A model that writes some text and then its calls block (cut anywhere, the opening
    included): the text streams as content, the block comes back as tool calls; text that only
    looks like the opening's beginning is held for a piece and then sent."""
    from manxue.providers.local_tools import ToolCallBuffer

    answer = "Let me look that up. " + block
    for cut in range(1, len(answer), 3):
        buf = ToolCallBuffer("auto", NAMES, fmt)
        streamed = feed_all(buf, [answer[:cut], answer[cut:]])
        delta, _, reason = buf.finish("stop")
        assert streamed == "Let me look that up. ", cut
        assert reason == "tool_calls" and delta["tool_calls"][0]["function"]["name"] == "get_time"
    opening = block[:5]
    buf = ToolCallBuffer("auto", NAMES, fmt)
    assert feed_all(buf, ["Not a call ", opening]) == "Not a call "    # may be the opening
    assert feed_all(buf, [" after all."]) == opening + " after all."
    tail = ToolCallBuffer("auto", NAMES, fmt)
    assert feed_all(tail, ["It ends with ", opening]) == "It ends with "
    delta, _, reason = tail.finish("stop")
    assert delta == {"content": opening} and reason == "stop"
    broken = ToolCallBuffer("auto", NAMES, fmt)
    assert feed_all(broken, ["Text ", block[: len(block) // 2]]) == "Text "
    delta, _, reason = broken.finish("length")                      # cut off: text after all
    assert delta == {"content": block[: len(block) // 2]} and reason == "length"


def model_with_template(factory: Any, name: str, template: str) -> Path:
    """A copy of the shipped SmolLM2 GGUF carrying `template` as its chat template."""
    from tests.engine.conftest import smollm2_copy

    folder = factory.mktemp(name)
    source = folder / "template.jinja"
    source.write_text(template, encoding="utf-8")
    return smollm2_copy(folder / f"smollm2-{name}.gguf", "--chat-template-file", str(source))


def gateway_on(model: Path, factory: Any, name: str) -> Iterator[openai.OpenAI]:
    """A gateway serving `model` as the deployment "agent", and an OpenAI client on it."""
    from tests.engine.conftest import local_gateway

    yield from local_gateway("agent", model, factory.mktemp(f"{name}-gateway"), SMALL)


def fixtures(name: str, template: str) -> tuple[Any, Any]:
    """The module fixtures `model` (model_with_template) and `client` (gateway_on) of a test
    file for one template: `model, client = fixtures("hermes", TEMPLATE)`."""
    import pytest

    @pytest.fixture(scope="module")
    def model(tmp_path_factory: Any) -> Path:
        return model_with_template(tmp_path_factory, name, template)

    @pytest.fixture(scope="module")
    def client(model: Path, tmp_path_factory: Any) -> Iterator[openai.OpenAI]:
        yield from gateway_on(model, tmp_path_factory, name)

    return model, client


@contextmanager
def served_history(model: Path) -> Iterator[tuple[Any, Any, str]]:
    """An engine on `model`, the tool history (HISTORY, with WEATHER) prepared, and the prompt
    text that request is served as (checked: its tokens are the prepared prompt)."""
    from manxue.engine.engine import Engine
    from manxue.engine.options import EngineOptions
    from manxue.engine.tools import structured

    engine = Engine(model, EngineOptions(n_ctx=2048, n_parallel=1, n_threads=1))
    try:
        body = {"messages": HISTORY, "tools": [WEATHER], "max_tokens": 4}
        prepared = engine.prepare(body)
        form = structured(body, HISTORY, engine.template_tools)
        text = engine.render(form.messages, form.template_tools)
        assert prepared.prompt.tolist() == engine.tokenize_prompt(text)
        yield engine, prepared, text
    finally:
        engine.close()
