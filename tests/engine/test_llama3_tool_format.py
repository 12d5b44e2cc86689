"""A model whose chat template writes tool calls as Llama 3.1-3.3 do (the tools as JSON, a call
as the whole answer `{"name": ..., "parameters": {...}}`, tool results in the `ipython` role) is
served in that format: a forced call is that object under a grammar, and an answer made of such
objects comes back as OpenAI tool calls. The test model is the shipped SmolLM2 with a template
of that kind written into a copy of its GGUF (gguf_new_metadata)."""

from __future__ import annotations

import json
from pathlib import Path

import openai

from manxue.engine.tool_formats import (
    HERMES,
    LLAMA3_JSON,
    may_become_call,
    native_format,
    parse_calls,
)
from manxue.providers.local_tools import ToolCallBuffer
from tests.engine.native_tool_cases import (
    NAMES,
    check_forced_calls,
    fixtures,
    served_history,
)
from tests.engine.test_native_tool_format import TEMPLATE as HERMES_TEMPLATE

TEMPLATE = """\
{%- set head = '<|start_header_id|>' %}{%- set tail = '<|end_header_id|>\\n\\n' %}
{%- if tools %}{{ head }}system{{ tail }}Environment: ipython
You may call these functions; to call one, answer only with JSON of the form
{"name": function name, "parameters": dictionary of argument name and its value}.

{% for t in tools %}{{ t | tojson }}

{% endfor %}{% if messages[0].role == 'system' %}{{ messages[0].content }}{% endif %}<|eot_id|>
{%- elif messages[0].role == 'system' %}{{ head }}system{{ tail }}{{ messages[0].content }}<|eot_id|>
{%- endif %}
{%- for m in messages %}
{%- if m.role == 'assistant' and m.tool_calls %}{{ head }}assistant{{ tail }}
{%- for c in m.tool_calls %}{"name": "{{ c.function.name }}", "parameters": \
{{ c.function.arguments | tojson }}}{% endfor %}<|eom_id|>
{%- elif m.role == 'tool' %}{{ head }}ipython{{ tail }}{{ m.content }}<|eot_id|>
{%- elif m.role != 'system' %}{{ head }}{{ m.role }}{{ tail }}{{ m.content }}<|eot_id|>
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{ head }}assistant{{ tail }}{% endif %}"""


model, client = fixtures("llama3", TEMPLATE)


def test_the_format_is_read_from_the_template() -> None:
    assert native_format(TEMPLATE) == LLAMA3_JSON
    assert native_format(HERMES_TEMPLATE) == HERMES
    no_tools = TEMPLATE.replace("tools", "items")
    assert native_format(no_tools) is None


def test_calls_are_parsed_from_the_whole_answer() -> None:
    one = '{"name": "get_weather", "parameters": {"city": "Oslo"}}'
    calls = parse_calls(one, NAMES, LLAMA3_JSON)
    assert calls == [{"name": "get_weather", "arguments": '{"city": "Oslo"}'}]
    tagged = parse_calls("<|python_tag|>" + one, NAMES, LLAMA3_JSON)
    assert tagged == calls
    two = parse_calls(one + '; {"name": "get_time", "parameters": "{\\"city\\": \\"Lima\\"}"}',
                      NAMES, LLAMA3_JSON)
    assert two is not None and [json.loads(c["arguments"]) for c in two] == [
        {"city": "Oslo"}, {"city": "Lima"}]
    assert parse_calls("Sure: " + one, NAMES, LLAMA3_JSON) is None          # text first
    assert parse_calls(one + " and that is all", NAMES, LLAMA3_JSON) is None  # text after
    assert parse_calls('{"name": "rm_rf", "parameters": {}}', NAMES, LLAMA3_JSON) is None
    assert parse_calls('{"name": "get_time", "parameters": [1]}', NAMES, LLAMA3_JSON) is None
    assert parse_calls("", NAMES, LLAMA3_JSON) is None


def test_auto_holds_what_may_be_a_call_and_releases_text() -> None:
    assert may_become_call("<|python", LLAMA3_JSON) and may_become_call(" {", LLAMA3_JSON)
    assert not may_become_call("The weather", LLAMA3_JSON)
    buf = ToolCallBuffer("auto", NAMES, LLAMA3_JSON)
    assert buf.feed('{"name": "get_time", ', []) == ("", [])
    assert buf.feed('"parameters": {"city": "Rome"}}', []) == ("", [])
    delta, _, reason = buf.finish("stop")
    assert reason == "tool_calls" and delta["tool_calls"][0]["function"]["name"] == "get_time"
    text = ToolCallBuffer("auto", NAMES, LLAMA3_JSON)
    assert text.feed("It is", []) == ("It is", [])


def test_the_template_renders_tools_and_their_history(model: Path) -> None:
    with served_history(model) as (engine, prepared, text):
        assert engine.tool_format == LLAMA3_JSON
        assert '{"name": "get_weather", "parameters": {"city": "Oslo"}}' in text
        assert "ipython<|end_header_id|>\n\n4 C, rain" in text
        assert "Result of" not in text                          # not the generic rewrite
        assert prepared.tool_format == LLAMA3_JSON and prepared.tool_mode == "auto"


def test_a_forced_call_is_valid_in_the_models_own_format(client: openai.OpenAI) -> None:
    check_forced_calls(client)
