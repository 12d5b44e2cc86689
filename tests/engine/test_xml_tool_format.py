"""A model whose chat template writes calls as Qwen3-Coder and Qwen 3.5 do (`<tool_call>` with
`<function=NAME>` and one `<parameter=KEY>` element per argument) is served in that format: a
forced call is sampled in that layout, and the answer's parameters come back typed by the
function's schema. The test model is the shipped SmolLM2 with such a template written into a
copy of its GGUF."""

from __future__ import annotations

import json
from pathlib import Path

import openai

from manxue.engine.grammar import check_grammar
from manxue.engine.tool_format_xml import QWEN_XML, forced_grammar
from manxue.engine.tool_formats import native_format, parse_calls
from tests.engine.native_tool_cases import (
    NAMES,
    TIME,
    WEATHER,
    check_forced_calls,
    check_text_then_calls,
    fixtures,
    served_history,
)

TEMPLATE = """\
{%- if tools %}<|im_start|>system
Functions, as JSON:
{% for t in tools %}{{ t | tojson }}
{% endfor %}To call one, reply with
<tool_call>
<function=NAME>
<parameter=KEY>
VALUE
</parameter>
</function>
</tool_call><|im_end|>
{% endif %}
{%- for m in messages %}
{%- if m.role == 'assistant' and m.tool_calls %}<|im_start|>assistant
{% for c in m.tool_calls %}<tool_call>
<function={{ c.function.name }}>
{% for k, v in c.function.arguments | items %}<parameter={{ k }}>
{{ v | tojson if v is mapping else v }}
</parameter>
{% endfor %}</function>
</tool_call>{% endfor %}<|im_end|>
{% elif m.role == 'tool' %}<|im_start|>user
<tool_response>
{{ m.content }}
</tool_response><|im_end|>
{% else %}<|im_start|>{{ m.role }}
{{ m.content }}<|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""
FORM = {"name": "book", "parameters": {"type": "object", "properties": {
    "city": {"type": "string", "maxLength": 20}, "nights": {"type": "integer"},
    "breakfast": {"type": "boolean"}, "room": {"enum": ["single", "double"]},
    "extras": {"type": "object", "properties": {"cot": {"type": "boolean"}}}},
    "required": ["city", "nights"]}}


def _block(name: str, params: dict[str, str]) -> str:
    inner = "".join(f"<parameter={k}>\n{v}\n</parameter>\n" for k, v in params.items())
    return f"<tool_call>\n<function={name}>\n{inner}</function>\n</tool_call>"


model, client = fixtures("xml", TEMPLATE)


def test_the_format_is_read_from_the_template() -> None:
    assert native_format(TEMPLATE) == QWEN_XML


def test_parameters_come_back_typed_by_the_schema() -> None:
    text = _block("book", {"city": "Oslo\nNorway", "nights": "3", "breakfast": "True",
                           "room": "double", "extras": '{"cot": true}'})
    calls = parse_calls(text, ("book",), QWEN_XML, {"book": FORM["parameters"]})
    assert calls is not None and calls[0]["name"] == "book"
    assert json.loads(calls[0]["arguments"]) == {"city": "Oslo\nNorway", "nights": 3,
                                                 "breakfast": True, "room": "double",
                                                 "extras": {"cot": True}}
    digits = parse_calls(_block("book", {"city": "123", "nights": "2"}), ("book",), QWEN_XML,
                         {"book": FORM["parameters"]})
    assert digits is not None and json.loads(digits[0]["arguments"])["city"] == "123"   # a string
    assert parse_calls("Sure. " + text, ("book",), QWEN_XML, {}) is None
    assert parse_calls(_block("rm_rf", {}), ("book",), QWEN_XML, {}) is None
    assert parse_calls("<tool_call>\n<function=book>\nstray\n</function>\n</tool_call>",
                       ("book",), QWEN_XML, {}) is None


def test_text_before_the_calls_streams_as_content() -> None:
    check_text_then_calls(QWEN_XML, _block("get_time", {"city": "Lima"}))


def test_the_forced_grammar_is_valid_for_llama_cpp(model: Path) -> None:
    from manxue.engine.model_file import ModelFile

    model = ModelFile(model)
    try:
        gbnf = forced_grammar([FORM, WEATHER["function"], {"name": "ping", "parameters": {}}])
        check_grammar(model.vocab, gbnf, model.n_vocab)
        assert "text-char{1,20}" in gbnf and '"single" | "double"' in gbnf
    finally:
        model.close()


def test_the_template_renders_the_history(model: Path) -> None:
    with served_history(model) as (engine, prepared, _):
        assert engine.tool_format == QWEN_XML and not engine.template_tools.arguments_as_text
        assert prepared.tool_format == QWEN_XML and prepared.tool_mode == "auto"
        assert prepared.tool_schemas == {"get_weather": WEATHER["function"]["parameters"]}


def test_a_forced_call_is_valid_in_the_models_own_format(client: openai.OpenAI) -> None:
    check_forced_calls(client, max_tokens=120)
    out = client.chat.completions.create(
        model="agent", messages=[{"role": "user", "content": "Book Oslo for 2 nights."}],
        tools=[{"type": "function", "function": FORM}, TIME], tool_choice="required",
        max_tokens=160, temperature=0)
    call = out.choices[0].message.tool_calls[0]  # type: ignore[index]
    args = json.loads(call.function.arguments)
    if call.function.name == "book":
        assert isinstance(args["city"], str) and isinstance(args["nights"], int)
    assert set(NAMES) | {"book"} >= {call.function.name}
