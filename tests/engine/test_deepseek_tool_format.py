"""A model whose chat template writes DeepSeek's tool-call tokens is served in that format: the
template renders the tools and the tool history (arguments as the JSON text they came in), a
forced call is sampled in the template's layout with its arguments under the function's schema,
and the answer's calls block comes back as OpenAI tool calls. Both layouts (V3.1's
`NAME<｜tool▁sep｜>ARGS`, V3 / R1's `function<｜tool▁sep｜>NAME` with a json fence) are read.
The test model is the shipped SmolLM2 with such a template written into a copy of its GGUF."""

from __future__ import annotations

import json
from pathlib import Path

import openai

from manxue.engine import tool_format_deepseek as ds
from manxue.engine.chat_template import ChatTemplate
from manxue.engine.grammar import check_grammar
from manxue.engine.tool_formats import (
    arguments_as_text,
    markers,
    native_format,
    parse_calls,
    shows_tools,
    template_tools,
)
from manxue.engine.tools import TemplateTools, structured
from manxue.providers.local_tools import ToolCallBuffer
from tests.engine.native_tool_cases import (
    HISTORY,
    NAMES,
    TIME,
    WEATHER,
    check_forced_calls,
    check_text_then_calls,
    fixtures,
    served_history,
)

B, E = ds.CALLS_BEGIN, ds.CALLS_END
CB, CE, SEP = ds.CALL_BEGIN, ds.CALL_END, ds.SEP
TEMPLATE = """\
{{- bos_token }}{% if tools %}## Tools
You may call these functions. To call one, write
<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>NAME<｜tool▁sep｜>ARGUMENTS AS JSON\
<｜tool▁call▁end｜><｜tool▁calls▁end｜>
{% for t in tools %}### {{ t.function.name }}
{{ t.function.parameters | tojson }}
{% endfor %}{% endif %}
{%- for m in messages %}
{%- if m.role == 'system' %}{{ m.content }}
{%- elif m.role == 'user' %}<｜User｜>{{ m.content }}
{%- elif m.role == 'assistant' and m.tool_calls %}<｜Assistant｜><｜tool▁calls▁begin｜>
{%- for c in m.tool_calls %}<｜tool▁call▁begin｜>{{ c.function.name }}<｜tool▁sep｜>\
{{ c.function.arguments }}<｜tool▁call▁end｜>{% endfor %}<｜tool▁calls▁end｜><｜end▁of▁sentence｜>
{%- elif m.role == 'assistant' %}<｜Assistant｜>{{ m.content }}<｜end▁of▁sentence｜>
{%- elif m.role == 'tool' %}<｜tool▁output▁begin｜>{{ m.content }}<｜tool▁output▁end｜>
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}<｜Assistant｜>{% endif %}"""
# as DeepSeek's own V3 / R1 / V3.1 templates are: the tools are not rendered (DeepSeek's API
# describes them in the system turn) and a call's arguments are encoded with tojson
UNSHOWN = """\
{{- bos_token }}{% for m in messages %}
{%- if m.role == 'system' %}{{ m.content }}
{%- elif m.role == 'user' %}<｜User｜>{{ m.content }}
{%- elif m.role == 'assistant' and m.tool_calls %}<｜Assistant｜><｜tool▁calls▁begin｜>
{%- for c in m.tool_calls %}{{ '<｜tool▁call▁begin｜>' + c.function.name + '<｜tool▁sep｜>' \
+ c.function.arguments | tojson + '<｜tool▁call▁end｜>' }}{% endfor %}<｜tool▁calls▁end｜>
{%- elif m.role == 'tool' %}<｜tool▁output▁begin｜>{{ m.content }}<｜tool▁output▁end｜>
{%- endif %}{% endfor %}{% if add_generation_prompt %}<｜Assistant｜>{% endif %}"""
R1_LAYOUT = TEMPLATE.replace("<｜tool▁call▁begin｜>NAME<｜tool▁sep｜>ARGUMENTS AS JSON",
                             "<｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\nARGS\n```")


model, client = fixtures("deepseek", TEMPLATE)


def test_the_layout_is_read_from_the_template() -> None:
    assert native_format(TEMPLATE) == ds.DEEPSEEK
    assert native_format(R1_LAYOUT) == ds.DEEPSEEK_R1
    assert markers(ds.DEEPSEEK) == ds.MARKERS and markers(None) == ()


def _as_text(source: str) -> bool:
    template = ChatTemplate(source, "gguf")
    return arguments_as_text(lambda m: template.render(m, tools=template_tools([WEATHER["function"]])))


def test_a_template_that_does_not_show_the_tools_gets_them_in_the_system_turn() -> None:
    assert native_format(UNSHOWN) == ds.DEEPSEEK
    assert not shows_tools(UNSHOWN) and not _as_text(UNSHOWN)
    assert _as_text(TEMPLATE) and shows_tools(TEMPLATE)
    assert not _as_text(TEMPLATE.replace("c.function.arguments }}", "c.function.arguments | tojson }}"))
    form = structured({"messages": HISTORY, "tools": [WEATHER, TIME]}, HISTORY,
                      TemplateTools(ds.DEEPSEEK, shows_tools=False, arguments_as_text=False))
    text = ChatTemplate(UNSHOWN, "gguf", bos_token="<s>").render(form.messages)
    assert text.startswith("<s>## Tools") and "### get_weather" in text and "### get_time" in text
    assert f"{B}{CB}NAME{SEP}ARGUMENTS{CE}{E}" in text                # the block to write
    assert f'{CB}get_weather{SEP}{{"city": "Oslo"}}{CE}' in text      # encoded once, by tojson
    r1 = structured({"messages": HISTORY, "tools": [WEATHER]}, HISTORY,
                    TemplateTools(ds.DEEPSEEK_R1, shows_tools=False, arguments_as_text=False))
    assert "function" + SEP + "NAME\n```json\nARGUMENTS\n```" in r1.messages[0]["content"]


def test_templates_may_hand_tojson_a_generator() -> None:
    source = "{{ tools | map(attribute='function') | tojson }}{{ messages[0].content }}"
    text = ChatTemplate(source, "gguf").render([{"role": "user", "content": "hi"}],
                                               tools=[WEATHER, TIME])
    assert [f["name"] for f in json.loads(text.removesuffix("hi"))] == list(NAMES)


def test_calls_are_parsed_in_both_layouts() -> None:
    v31 = f'{B}{CB}get_weather{SEP}{{"city": "Oslo"}}{CE}{CB}get_time{SEP}{{"city": "Lima"}}{CE}{E}'
    r1 = (f'{B}{CB}function{SEP}get_weather\n```json\n{{"city": "Oslo"}}\n```{CE}'
          f'{CB}function{SEP}get_time\n```json\n{{"city": "Lima"}}\n```{CE}{E}')
    for fmt in ds.FORMATS:
        for text in (v31, r1, v31.removesuffix(E)):
            calls = parse_calls(text, NAMES, fmt)
            assert calls is not None and [c["name"] for c in calls] == ["get_weather", "get_time"]
            assert [json.loads(c["arguments"]) for c in calls] == [{"city": "Oslo"}, {"city": "Lima"}]
    assert parse_calls("Sure. " + v31, NAMES, ds.DEEPSEEK) is None          # text first
    assert parse_calls(v31 + " Done.", NAMES, ds.DEEPSEEK) is None          # text after
    assert parse_calls(f"{B}{CB}rm_rf{SEP}{{}}{CE}{E}", NAMES, ds.DEEPSEEK) is None
    assert parse_calls(f"{B}{CB}get_time{SEP}not json{CE}{E}", NAMES, ds.DEEPSEEK) is None
    assert parse_calls(f"{B}{E}", NAMES, ds.DEEPSEEK) is None


def test_auto_holds_what_may_be_a_call_and_releases_text() -> None:
    buf = ToolCallBuffer("auto", NAMES, ds.DEEPSEEK)
    assert buf.feed(B[:4], []) == ("", [])
    assert buf.feed(B[4:] + CB + "get_time" + SEP, []) == ("", [])
    assert buf.feed('{"city": "Rome"}' + CE + E, []) == ("", [])
    delta, _, reason = buf.finish("stop")
    assert reason == "tool_calls" and delta["tool_calls"][0]["function"]["name"] == "get_time"
    text = ToolCallBuffer("auto", NAMES, ds.DEEPSEEK)
    assert text.feed("It is sunny", []) == ("It is sunny", [])


def test_text_before_the_calls_streams_as_content() -> None:
    check_text_then_calls(ds.DEEPSEEK, f'{B}{CB}get_time{SEP}{{"city": "Lima"}}{CE}{E}')


def test_forced_grammars_are_valid_for_llama_cpp(model: Path) -> None:
    from manxue.engine.model_file import ModelFile

    model = ModelFile(model)
    try:
        for fmt in ds.FORMATS:
            gbnf = ds.forced_grammar(fmt, [WEATHER["function"], TIME["function"],
                                           {"name": "ping", "parameters": {}}])
            check_grammar(model.vocab, gbnf, model.n_vocab)
            assert gbnf.count("-root ::=") == 3     # one namespaced argument grammar each
    finally:
        model.close()


def test_the_template_renders_tools_and_their_history(model: Path) -> None:
    with served_history(model) as (engine, prepared, text):
        assert engine.tool_format == ds.DEEPSEEK
        assert engine.template_tools == TemplateTools(ds.DEEPSEEK, True, True)
        assert f'{CB}get_weather{SEP}{{"city": "Oslo"}}{CE}' in text
        assert "<｜tool▁output▁begin｜>4 C, rain" in text and "### get_weather" in text
        assert prepared.tool_format == ds.DEEPSEEK and prepared.tool_mode == "auto"


def test_a_forced_call_is_valid_in_the_models_own_layout(client: openai.OpenAI) -> None:
    check_forced_calls(client, max_tokens=200)
