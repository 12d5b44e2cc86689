"""A model whose chat template writes tool calls itself (`<tool_call>` blocks, the Hermes format
of Qwen and its kin) is served in that format: the template renders the tools and the tool
history, a forced call is sampled under a grammar for the tags around the call's JSON, and the
answer's blocks come back as OpenAI tool calls. The test model is the shipped SmolLM2 with such
a template written into a copy of its GGUF (gguf_new_metadata)."""

from __future__ import annotations

import json
from pathlib import Path

import openai

from manxue.engine.tool_formats import (
    HERMES,
    native_format,
    parse_calls,
    wrap_grammar,
)
from manxue.engine.tools import structured
from manxue.providers.local_tools import ToolCallBuffer
from tests.engine.conftest import smollm2_copy
from tests.engine.native_tool_cases import (
    WEATHER,
    check_forced_calls,
    check_text_then_calls,
    fixtures,
    served_history,
)

TEMPLATE = """\
{%- if tools %}<|im_start|>system
{% if messages[0].role == 'system' %}{{ messages[0].content }}

{% endif %}Functions you may call, as JSON signatures inside <tools></tools>:
<tools>
{% for tool in tools %}{{ tool | tojson }}
{% endfor %}</tools>
To call one, write its name and arguments as JSON inside <tool_call></tool_call> tags:
<tool_call>
{"name": <function name>, "arguments": <arguments object>}
</tool_call><|im_end|>
{% elif messages[0].role == 'system' %}<|im_start|>system
{{ messages[0].content }}<|im_end|>
{% endif %}
{%- for m in messages %}
{%- if m.role == 'assistant' %}<|im_start|>assistant
{{ m.content }}{% for c in m.tool_calls or [] %}
<tool_call>
{"name": "{{ c.function.name }}", "arguments": {{ c.function.arguments | tojson }}}
</tool_call>{% endfor %}<|im_end|>
{% elif m.role == 'tool' %}<|im_start|>user
<tool_response>
{{ m.content }}
</tool_response><|im_end|>
{% elif m.role != 'system' %}<|im_start|>{{ m.role }}
{{ m.content }}<|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""


model, client = fixtures("hermes", TEMPLATE)


def test_the_format_is_read_from_the_template() -> None:
    assert native_format(TEMPLATE) == HERMES
    assert native_format("{% for m in messages %}{{ m.content }}{% endfor %}") is None
    # XML inside the blocks (Qwen3-Coder / 3.5's <function=…><parameter=…>): not Hermes' JSON
    xml = ("{% if tools %}{{ tools | tojson }}{% endif %}{% for m in messages %}"
           "{% for c in m.tool_calls or [] %}<tool_call>\n<function={{ c.function.name }}>"
           "</function>\n</tool_call>{% endfor %}{% endfor %}")
    assert native_format(xml) is None
    grammar = wrap_grammar('root ::= "{" space "}"\nspace ::= " "?\n')
    assert grammar.startswith('root ::= "<tool_call>\\n" native-call "\\n</tool_call>"')
    assert 'native-call ::= "{" space "}"' in grammar


def test_calls_are_parsed_from_tool_call_blocks() -> None:
    names = ("get_weather", "get_time")
    two = ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>\n'
           '<tool_call>\n{"name": "get_time", "arguments": "{\\"city\\": \\"Lima\\"}"}\n</tool_call>')
    calls = parse_calls(two, names)
    assert calls is not None and [c["name"] for c in calls] == ["get_weather", "get_time"]
    assert [json.loads(c["arguments"]) for c in calls] == [{"city": "Oslo"}, {"city": "Lima"}]
    assert parse_calls("It is sunny. " + two, names) is None          # text around: text
    assert parse_calls('<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>', names) is None
    assert parse_calls("<tool_call>not json</tool_call>", names) is None


def test_auto_holds_a_call_and_releases_text() -> None:
    buf = ToolCallBuffer("auto", ("get_weather",), HERMES)
    assert buf.feed("<tool", []) == ("", [])
    assert buf.feed('_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}', []) == ("", [])
    assert buf.feed("\n</tool_call>", []) == ("", [])
    delta, _, reason = buf.finish("stop")
    assert reason == "tool_calls" and delta["tool_calls"][0]["function"]["name"] == "get_weather"
    text = ToolCallBuffer("auto", ("get_weather",), HERMES)
    assert text.feed("<", []) == ("", [])
    assert text.feed("b>Sunny</b>", []) == ("<b>Sunny</b>", [])     # not a call after all


def test_text_before_the_calls_streams_as_content() -> None:
    check_text_then_calls(HERMES, '<tool_call>\n{"name": "get_time", "arguments": {"city": "Lima"}}'
                                  "\n</tool_call>")


def test_the_template_renders_tools_and_their_history(model: Path) -> None:
    with served_history(model) as (engine, prepared, text):
        assert engine.tool_format == HERMES
        assert "<tools>" in text and '"name": "get_weather"' in text
        assert '"arguments": {"city": "Oslo"}' in text          # arguments as an object
        assert "<tool_response>\n4 C, rain\n</tool_response>" in text
        assert "Result of" not in text                          # not the generic rewrite
        assert prepared.tool_format == HERMES and prepared.tool_mode == "auto"


def test_a_forced_call_is_valid_in_the_models_own_format(client: openai.OpenAI) -> None:
    check_forced_calls(client)


NO_SYSTEM = """\
{%- if messages[0].role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}
{%- for m in messages %}<|im_start|>{{ m.role }}
{{ m.content }}<|im_end|>
{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""


def test_a_template_without_a_system_turn_gets_the_tools_in_the_first_user_message(
        tmp_path: Path) -> None:
    """Gemma 2's kind: the generic format's description of the tools goes to the head of the
    first user message instead of a system turn the template would refuse."""
    from manxue.engine.engine import Engine
    from manxue.engine.options import EngineOptions

    template = tmp_path / "template.jinja"
    template.write_text(NO_SYSTEM, encoding="utf-8")
    model = smollm2_copy(tmp_path / "no-system.gguf", "--chat-template-file", str(template))
    engine = Engine(model, EngineOptions(n_ctx=2048, n_parallel=1, n_threads=1))
    try:
        assert engine.tool_format is None and not engine.template_tools.takes_system
        ask = [{"role": "user", "content": "Weather in Oslo?"}]
        first = structured({"messages": ask, "tools": [WEATHER]}, ask, engine.template_tools)
        assert [m["role"] for m in first.messages] == ["user"]
        assert first.messages[0]["content"].startswith("You can call functions.")
        assert first.messages[0]["content"].endswith("\n\nWeather in Oslo?")
        prepared = engine.prepare({"messages": ask, "tools": [WEATHER], "tool_choice": "required",
                                   "max_tokens": 4})               # rendered, not refused
        assert prepared.tool_mode == "forced"
    finally:
        engine.close()
