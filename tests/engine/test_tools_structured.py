"""Tool calls and structured output from the shipped 135M model, through the gateway with the
official SDK and LangChain: forced calls always valid against the function's schema, JSON
Schema outputs always validating (a property test over generated schemas), tool history in
multi-turn chats, and clear 422s for what cannot be honoured."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from manxue.engine.default_model import default_model_path

SMALL = {"n_ctx": 2048, "n_parallel": 2, "max_queue": 0, "n_threads": 1}
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40},
                                                    "unit": {"enum": ["c", "f"]}},
                   "required": ["city", "unit"], "additionalProperties": False}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "Local time in a timezone",
    "parameters": {"type": "object", "properties": {"tz": {"type": "string", "maxLength": 30}},
                   "required": ["tz"]}}}
ASK = [{"role": "system", "content": "You are a helpful assistant."},
       {"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from manxue.server.app import build_app
    from manxue.settings import settings_from_dict
    from manxue.testing.loopback import LoopbackServer

    settings = settings_from_dict({
        "data_dir": str(tmp_path_factory.mktemp("tools")),
        "deployments": [{"name": "edge", "model": "smollm2", "kind": "local",
                         "path": str(default_model_path()), "options": SMALL}]})
    with LoopbackServer(build_app(settings)) as srv:
        yield srv.url


@pytest.fixture(scope="module")
def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=120)


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_weather"}}])
def test_a_forced_call_is_always_valid(client, choice):
    for seed in range(3):
        r = client.chat.completions.create(model="smollm2", messages=ASK, tools=[WEATHER, TIME],  # type: ignore[list-item]
                                           tool_choice=choice, max_tokens=80, seed=seed)
        msg = r.choices[0].message
        assert r.choices[0].finish_reason == "tool_calls" and msg.content is None
        [call] = msg.tool_calls or []
        fn = call.function  # type: ignore[union-attr]
        schema = {"get_weather": WEATHER, "get_time": TIME}[fn.name]["function"]["parameters"]  # type: ignore[index]
        jsonschema.validate(json.loads(fn.arguments), schema)
        if isinstance(choice, dict):
            assert fn.name == "get_weather"


def test_a_streamed_forced_call_arrives_whole(client):
    chunks = list(client.chat.completions.create(model="smollm2", messages=ASK, tools=[WEATHER],  # type: ignore[list-item]
                                                 tool_choice="required", max_tokens=80, stream=True))
    calls = [c.choices[0].delta.tool_calls for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    assert len(calls) == 1 and calls[0][0].function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(calls[0][0].function.arguments)["unit"] in ("c", "f")  # type: ignore[union-attr,arg-type]
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] \
        == ["tool_calls"]


def test_tool_results_in_the_history_reach_the_model(client):
    history = [*ASK,
               {"role": "assistant", "content": None, "tool_calls": [{
                   "id": "call_1", "type": "function",
                   "function": {"name": "get_weather", "arguments": '{"city":"Paris","unit":"c"}'}}]},
               {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 degrees"}]
    r = client.chat.completions.create(model="smollm2", messages=history, tools=[WEATHER],  # type: ignore[arg-type,list-item]
                                       tool_choice="none", max_tokens=30, temperature=0)
    assert r.choices[0].message.content and r.choices[0].message.tool_calls is None
    assert r.usage is not None and r.usage.prompt_tokens > 40  # the result was rendered


def test_json_object_always_parses(client):
    for seed in range(3):
        r = client.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": "Describe a cat as JSON."}],
            response_format={"type": "json_object"}, max_tokens=120, seed=seed)
        if r.choices[0].finish_reason == "stop":
            assert isinstance(json.loads(r.choices[0].message.content or ""), dict)


def test_unsupported_schema_keywords_are_named(client):
    for keyword, value in [("patternProperties", {"^x": {"type": "string"}}), ("if", {}),
                           ("minimum", 3), ("oneOf", [{"type": "string"}])]:
        schema = {"type": "object", keyword: value}
        with pytest.raises(openai.UnprocessableEntityError, match=repr(keyword)):
            client.chat.completions.create(
                model="smollm2", messages=[{"role": "user", "content": "x"}],
                response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": schema}})
    with pytest.raises(openai.UnprocessableEntityError, match="not in 'tools'"):
        client.chat.completions.create(model="smollm2", messages=ASK, tools=[WEATHER],  # type: ignore[list-item]
                                       tool_choice={"type": "function", "function": {"name": "nope"}})
    many = [{"type": "function", "function": {"name": f"f{i}"}} for i in range(129)]
    with pytest.raises(openai.UnprocessableEntityError, match="at most 128"):   # bounded work
        client.chat.completions.create(model="smollm2", messages=ASK, tools=many,  # type: ignore[arg-type]
                                       tool_choice="required")


# -- the property: any schema of this family, every output validates --------------------------

_LEAF = st.sampled_from([
    {"type": "string", "maxLength": 12}, {"type": "integer"}, {"type": "string", "minLength": 2,
                                                                "maxLength": 5},
    {"type": "number"}, {"type": "boolean"}, {"enum": ["red", "green", "blue"]},
    {"type": "array", "items": {"type": "integer"}, "maxItems": 3},
    {"type": "array", "items": {"type": "string", "maxLength": 8}, "minItems": 1, "maxItems": 2},
    {"type": ["string", "null"], "maxLength": 8}, {"const": "fixed"},
])
_NAMES = st.sampled_from(["a", "name", "count", "ok", "tags", "kind", "score", "id"])


@st.composite
def _objects(draw: st.DrawFn, depth: int = 0) -> dict[str, Any]:
    names = draw(st.lists(_NAMES, min_size=1, max_size=3, unique=True))
    props = {}
    for n in names:
        nested = depth == 0 and draw(st.booleans()) and draw(st.booleans())
        props[n] = draw(_objects(depth + 1)) if nested else draw(_LEAF)
    required = draw(st.lists(st.sampled_from(names), unique=True))
    return {"type": "object", "properties": props, "required": required,
            "additionalProperties": False}


@given(schema=_objects(), seed=st.integers(0, 1000))
@settings(max_examples=50, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_every_output_validates_against_its_schema(client, schema, seed):
    r = client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "Fill in the form."}],
        response_format={"type": "json_schema",
                         "json_schema": {"name": "form", "strict": True, "schema": schema}},
        max_tokens=160, seed=seed)
    assert r.choices[0].finish_reason == "stop", r.choices[0].message.content
    jsonschema.validate(json.loads(r.choices[0].message.content or ""), schema)


# -- LangChain, as agent frameworks call it -------------------------------------------------------

def test_langchain_structured_output_and_bind_tools(url):
    pytest.importorskip("langchain_openai")
    from langchain_openai import ChatOpenAI
    from pydantic import BaseModel, Field

    class Person(BaseModel):
        name: str = Field(max_length=20)
        age: int

    llm = ChatOpenAI(base_url=url + "/v1", api_key="none", model="smollm2", max_tokens=100,  # type: ignore[arg-type]
                     temperature=0, max_retries=0)
    for method in ("json_schema", "function_calling", "json_mode"):
        structured = llm.with_structured_output(Person, method=method)  # type: ignore[arg-type]
        out = structured.invoke("Invent a person. Answer in JSON with name and age.")
        assert isinstance(out, Person | dict), method
    bound = llm.bind_tools([WEATHER["function"]], tool_choice="get_weather")
    msg = bound.invoke("What is the weather in Paris?")
    assert msg.tool_calls and msg.tool_calls[0]["name"] == "get_weather"  # type: ignore[attr-defined]


def test_n_choices_share_one_prompt_and_sample_on_their_own(client):
    one = client.chat.completions.create(model="smollm2", messages=ASK, max_tokens=12, seed=7)
    many = client.chat.completions.create(model="smollm2", messages=ASK, max_tokens=12, seed=7,
                                          n=2, temperature=1.0)
    assert [c.index for c in many.choices] == [0, 1]
    assert many.choices[0].message.content != many.choices[1].message.content
    assert many.usage is not None and one.usage is not None
    assert many.usage.prompt_tokens == one.usage.prompt_tokens  # the prompt counted once
    assert 2 <= many.usage.completion_tokens <= 24  # both answers
    texts = ["", ""]
    for chunk in client.chat.completions.create(model="smollm2", messages=ASK, max_tokens=12,
                                                seed=7, n=2, stream=True,
                                                stream_options={"include_usage": True}):
        for c in chunk.choices:
            texts[c.index] += c.delta.content or ""
    assert texts == [c.message.content for c in many.choices]
    with pytest.raises(openai.UnprocessableEntityError, match="'n'"):
        client.chat.completions.create(model="smollm2", messages=ASK, n=17)
    # more choices than the engine holds at once is refused, not queued forever (engines are
    # shared per model file, so this one may hold more than this module's options say)
    try:
        three = client.chat.completions.create(model="smollm2", messages=ASK, n=3, max_tokens=4)
        assert len(three.choices) == 3
    except openai.UnprocessableEntityError as exc:
        assert "n=3 needs 3 sequences" in str(exc)


def test_the_llm_cli_with_json_object(url, tmp_path):
    """simonw/llm with the gateway as an extra OpenAI-compatible model, `-o json_object 1`."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    llm = Path(sys.executable).parent / "llm"
    if not llm.exists():
        pytest.skip("the llm CLI is not installed")
    (tmp_path / "extra-openai-models.yaml").write_text(
        f'- model_id: manxue-smollm2\n  model_name: smollm2\n  api_base: "{url}/v1"\n')
    env = {**os.environ, "LLM_USER_PATH": str(tmp_path), "OPENAI_API_KEY": "none"}
    out = subprocess.run([str(llm), "-m", "manxue-smollm2", "-o", "json_object", "1",
                          "-o", "max_tokens", "300", "-o", "seed", "3",
                          "Answer with a JSON object with one key, ok, set to true."],
                         capture_output=True, text=True, env=env, timeout=180)
    assert out.returncode == 0, out.stderr
    assert out.stdout.lstrip().startswith("{")
    assert isinstance(json.loads(out.stdout), dict)


def test_a_raw_control_character_never_enters_a_json_string():
    """JSON forbids raw newlines in strings; the grammar refuses such tokens inside one, and
    checking one drawn token agrees with the whole-vocabulary mask."""
    import numpy as np

    from manxue.engine.grammar import GrammarSampler, schema_grammar
    from manxue.engine.model_file import ModelFile

    model = ModelFile(default_model_path())
    try:
        g = GrammarSampler(model.vocab, schema_grammar(
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}),
            model.n_vocab)
        for t in model.tokenize('{"a": "hello', special=False):
            g.accept(t)
        row = np.zeros(model.n_vocab, dtype=np.float32)
        g.mask(row)
        newline = model.tokenize("\n", special=False)[0]
        assert not g.allows(newline) and not np.isfinite(row[newline])
        sample = np.random.default_rng(0).choice(model.n_vocab, 2000, replace=False)
        assert all(g.allows(int(t)) == bool(np.isfinite(row[t])) for t in sample)
        g.close()
    finally:
        model.close()
