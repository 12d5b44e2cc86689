"""Tool calls and structured output for the local engine (OpenAI's wire format).

Where the model's chat template writes tool calls itself (engine/tool_formats.py), that format
is used. Otherwise tools use one documented generic format: the functions
are described in the system message, and the model calls one by answering with only a JSON
object `{"name": ..., "arguments": {...}}`. History is rewritten to match: an assistant's
`tool_calls` become that JSON, and a `tool` message becomes a user turn "Result of NAME: ...".

- `tool_choice` `required` or a named function: the answer is sampled under a grammar (JSON
  Schema of the call: the name, and the function's `parameters` as the arguments), so it is
  always a valid call, even from a 135M model.
- `auto` (the default with tools): the model answers freely; an answer that is such a JSON
  object naming a known function is returned as a tool call, anything else as text.
- `none`: the tools are not shown.
- `response_format` `json_object` / `json_schema`: the answer is sampled under the JSON (or the
  schema's) grammar; unsupported schema keywords are a 422 naming the keyword.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from manxue.engine.grammar import json_grammar, schema_grammar
from manxue.engine.tool_format_deepseek import forced_grammar, system_text
from manxue.engine.tool_format_xml import QWEN_XML
from manxue.engine.tool_format_xml import forced_grammar as xml_grammar
from manxue.engine.tool_formats import (
    arguments_key,
    is_deepseek,
    template_history,
    template_tools,
    wrap_grammar,
)
from manxue.errors import InvalidParameters

ToolMode = Literal["auto", "forced"]


@dataclass(frozen=True, slots=True)
class Structured:
    """What a chat body asks of the answer's form."""

    messages: list[Any]
    """The messages to render (tools described, tool history rewritten)."""
    grammar: str | None = None
    tool_mode: ToolMode | None = None
    tool_names: tuple[str, ...] = ()
    tool_format: str | None = None
    """The template's own format (engine/tool_formats.py), or None: the generic one."""
    template_tools: list[dict[str, Any]] | None = None
    """`tools` for a template that renders them itself."""
    tool_schemas: dict[str, Any] = field(default_factory=dict)
    """Each function's parameters schema (the XML format reads values by their types)."""


MAX_TOOLS = 128
"""OpenAI's own limit. Each function shown is rendered and tokenized, and a forced call
compiles a grammar per function, on the request's path: the count is bounded."""


def _functions(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise InvalidParameters("'tools' must be a list", param="tools")
    if len(tools) > MAX_TOOLS:
        raise InvalidParameters(f"'tools' may list at most {MAX_TOOLS} functions, not {len(tools)}",
                                param="tools")
    out = []
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise InvalidParameters(f"tools[{i}] must be {{\"type\": \"function\", \"function\": "
                                    "{\"name\": ..., \"parameters\": {...}}}", param=f"tools[{i}]")
        params = fn.get("parameters") or {"type": "object", "properties": {}}
        if not isinstance(params, dict):
            raise InvalidParameters(f"tools[{i}].function.parameters must be a JSON Schema object",
                                    param=f"tools[{i}]")
        out.append({"name": fn["name"], "description": fn.get("description", ""),
                    "parameters": params})
    return out


def _call_schema(fn: dict[str, Any], key: str = "arguments") -> dict[str, Any]:
    return {"type": "object", "properties": {"name": {"const": fn["name"]}, key: fn["parameters"]},
            "required": ["name", key]}


def _system_text(functions: list[dict[str, Any]]) -> str:
    listed = json.dumps(functions, ensure_ascii=False)
    return ("You can call functions. To call one, answer with only a JSON object "
            '{"name": "<function name>", "arguments": {<arguments>}} and nothing else. '
            f"Functions: {listed}")


def _rewrite(messages: list[Any], system: str | None, takes_system: bool = True) -> list[Any]:
    """Tool history in the generic format, and the functions described in the system turn."""
    names: dict[str, str] = {}
    out: list[Any] = []
    for m in messages:
        if not isinstance(m, dict):
            out.append(m)
            continue
        if m.get("role") == "assistant" and m.get("tool_calls"):
            calls = []
            for call in m["tool_calls"]:
                fn = call.get("function") or {}
                names[str(call.get("id"))] = str(fn.get("name", ""))
                try:
                    args = json.loads(fn.get("arguments") or "{}")
                except json.JSONDecodeError:
                    args = fn.get("arguments")
                calls.append(json.dumps({"name": fn.get("name"), "arguments": args}))
            text = "\n".join(filter(None, [m.get("content") or "", *calls]))
            out.append({"role": "assistant", "content": text})
        elif m.get("role") == "tool":
            name = names.get(str(m.get("tool_call_id")), "the function")
            content = m.get("content")
            if isinstance(content, list):
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
            out.append({"role": "user", "content": f"Result of {name}: {content}"})
        else:
            out.append(m)
    return _with_system(out, system, takes_system) if system is not None else out


def _with_system(messages: list[Any], system: str, takes_system: bool = True) -> list[Any]:
    """`system` added to the first system message, or as one before the others; for a
    template without a system turn (Gemma 2's), at the head of the first user message."""
    out = list(messages)
    first = out[0] if out and isinstance(out[0], dict) else {}
    if takes_system and first.get("role") == "system" and isinstance(first.get("content"), str):
        out[0] = {**first, "content": first["content"] + "\n\n" + system}
    elif takes_system:
        out.insert(0, {"role": "system", "content": system})
    else:
        for i, m in enumerate(out):
            if isinstance(m, dict) and m.get("role") == "user":
                content = m.get("content")
                if isinstance(content, list):
                    out[i] = {**m, "content": [{"type": "text", "text": system + "\n\n"}, *content]}
                else:
                    out[i] = {**m, "content": system + "\n\n" + (content or "")}
                break
    return out


def _response_grammar(fmt: Any) -> str | None:
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object", "json_schema"):
        raise InvalidParameters("response_format.type must be text, json_object or json_schema",
                                param="response_format")
    if fmt["type"] == "json_object":
        return json_grammar()
    if fmt["type"] == "json_schema":
        spec = fmt.get("json_schema")
        if not isinstance(spec, dict) or "schema" not in spec:
            raise InvalidParameters("response_format.json_schema needs a 'schema'",
                                    param="response_format")
        return schema_grammar(spec["schema"])
    return None


@dataclass(frozen=True, slots=True)
class TemplateTools:
    """How a chat template handles tools (tool_formats.py): the format it writes calls in
    (None: the generic one), whether it renders `tools` itself (else a DeepSeek template gets
    them described in the system turn), and whether it writes arguments as given (text)."""

    format: str | None = None
    shows_tools: bool = True
    arguments_as_text: bool = False
    takes_system: bool = True
    """False: the template refuses a system turn, so a tool description goes in the first user
    message instead."""


def structured(body: dict[str, Any], messages: list[Any],
               template: TemplateTools = TemplateTools()) -> Structured:
    """Tools, tool_choice and response_format of a chat body, for the engine, as `template`
    handles tools."""
    native = template.format
    grammar = _response_grammar(body.get("response_format"))
    tools = body.get("tools")
    choice = body.get("tool_choice", "auto" if tools else "none")
    has_history = any(isinstance(m, dict) and (m.get("role") == "tool" or m.get("tool_calls"))
                      for m in messages)
    if not tools or choice == "none":
        if native is not None:
            history = template_history(messages, template.arguments_as_text)
            return Structured(history if has_history else messages, grammar)
        return Structured(_rewrite(messages, None) if has_history else messages, grammar)
    functions = _functions(tools)
    names = tuple(f["name"] for f in functions)
    shown = template_tools(functions) if native is not None else None
    if native is None:
        history = _rewrite(messages, _system_text(functions), template.takes_system)
    else:
        history = template_history(messages, template.arguments_as_text)
        if not template.shows_tools and is_deepseek(native):
            history = _with_system(history, system_text(functions, native), template.takes_system)
    schemas = {f["name"]: f.get("parameters") or {} for f in functions}
    if choice == "auto":
        return Structured(history, grammar, "auto", names, native, shown, schemas)
    if choice == "required":
        forced = functions
    elif isinstance(choice, dict) and isinstance((choice.get("function") or {}).get("name"), str):
        name = choice["function"]["name"]
        forced = [f for f in functions if f["name"] == name]
        if not forced:
            raise InvalidParameters(f"tool_choice names {name!r}, which is not in 'tools'",
                                    param="tool_choice")
    else:
        raise InvalidParameters('tool_choice must be "none", "auto", "required" or '
                                '{"type": "function", "function": {"name": ...}}',
                                param="tool_choice")
    if native is not None and is_deepseek(native):
        return Structured(history, forced_grammar(native, forced), "forced", names, native, shown,
                          schemas)
    if native == QWEN_XML:
        return Structured(history, xml_grammar(forced), "forced", names, native, shown, schemas)
    key = arguments_key(native)
    schema = _call_schema(forced[0], key) if len(forced) == 1 else \
        {"anyOf": [_call_schema(f, key) for f in forced]}
    call_grammar = schema_grammar(schema)
    if native is not None:
        call_grammar = wrap_grammar(call_grammar, native)
    return Structured(history, call_grammar, "forced", names, native, shown, schemas)


def parse_call(text: str, names: tuple[str, ...]) -> dict[str, Any] | None:
    """The tool call an answer makes (`{"name", "arguments"}` naming a known function), or
    None: the answer is text."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(value, dict) or value.get("name") not in names:
        return None
    args = value.get("arguments", {})
    if not isinstance(args, dict):
        return None
    return {"name": value["name"], "arguments": json.dumps(args, ensure_ascii=False)}
