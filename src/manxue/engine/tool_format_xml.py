"""The XML tool-call format of Qwen3-Coder and Qwen 3.5 templates (engine/tool_formats.py).

A call is written inside `<tool_call>` as XML, one parameter per element:

    <tool_call>
    <function=get_weather>
    <parameter=city>
    Oslo
    </parameter>
    </function>
    </tool_call>

A string parameter is written as it is; other types as JSON (objects and arrays) or their text
(numbers, booleans). Read back, each value takes the type its function's schema gives it. A
forced call is sampled under a grammar of that layout: the function's required parameters in
order (then its optional ones, each optional), a string as text without `<` (up to its
maxLength; its other keywords are not applied), any other type under the grammar of its own
schema.
"""

from __future__ import annotations

import json
import re
from typing import Any

from manxue.engine.grammar import namespaced, schema_grammar

QWEN_XML = "qwen-xml"
OPEN, CLOSE = "<tool_call>", "</tool_call>"
_CALL = re.compile(r"<tool_call>\s*<function=([^>\n]+)>\s*(.*?)\s*</function>\s*</tool_call>",
                   re.DOTALL)
_PARAMETER = re.compile(r"<parameter=([^>\n]+)>\n?(.*?)\n?</parameter>", re.DOTALL)


def xml_format(template_source: str) -> str | None:
    """QWEN_XML for a template that writes calls in this layout, else None."""
    if OPEN in template_source and "<function=" in template_source \
            and "<parameter=" in template_source:
        return QWEN_XML
    return None


def parse(text: str, schemas: dict[str, Any]) -> list[Any]:
    """The calls of an answer that is only `<tool_call>` blocks, as {"name", "arguments"}
    values (`schemas`: each function's parameters schema, which types the values); [] when the
    answer is anything else."""
    values: list[Any] = []
    at = 0
    body = text.strip()
    for m in _CALL.finditer(body):
        if body[at:m.start()].strip():
            return []
        name = m.group(1).strip()
        inner = m.group(2)
        properties = (schemas.get(name) or {}).get("properties") or {}
        args: dict[str, Any] = {}
        rest = _PARAMETER.sub("", inner)
        if rest.strip():
            return []
        for key, raw in _PARAMETER.findall(inner):
            args[key.strip()] = _typed(raw, properties.get(key.strip()) or {})
        values.append({"name": name, "arguments": args})
        at = m.end()
    return values if values and not body[at:].strip() else []


def _typed(raw: str, schema: dict[str, Any]) -> Any:
    """A parameter's text as the type its schema names (text where it names none it can read)."""
    kind = schema.get("type")
    if kind == "string":
        return raw
    if kind == "boolean" and raw.strip().lower() in ("true", "false"):
        return raw.strip().lower() == "true"
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def forced_grammar(functions: list[dict[str, Any]]) -> str:
    """GBNF for one call of one of `functions` in this layout."""
    lines = [f"root ::= {_literal(OPEN + chr(10))} call {_literal(chr(10) + CLOSE)}",
             "call ::= " + " | ".join(f"fn{i}" for i in range(len(functions))),
             'text-char ::= [^<]']
    for i, fn in enumerate(functions):
        schema = fn.get("parameters") or {}
        properties: dict[str, Any] = schema.get("properties") or {}
        required = [k for k in schema.get("required") or [] if k in properties]
        ordered = required + [k for k in properties if k not in required]
        parts = []
        for j, key in enumerate(ordered):
            rule = f"fn{i}-p{j}"
            value = _value_rule(rule, properties[key], lines)
            lines.append(f"{rule} ::= {_literal(f'<parameter={key}>' + chr(10))} {value} "
                         f"{_literal(chr(10) + '</parameter>' + chr(10))}")
            parts.append(rule if key in required else f"{rule}?")
        head = _literal(f"<function={fn['name']}>\n")
        lines.append(f"fn{i} ::= {head} {' '.join(parts)} {_literal('</function>')}")
    return "\n".join(lines) + "\n"


def _value_rule(rule: str, schema: dict[str, Any], lines: list[str]) -> str:
    """The rule a parameter's value is sampled under: text for a string, its own schema's
    grammar otherwise (added to `lines`)."""
    if schema.get("type") == "string" or (schema.get("enum") and all(
            isinstance(v, str) for v in schema["enum"])):
        if schema.get("enum"):  # written as they are, not as JSON strings
            return "(" + " | ".join(_literal(str(v)) for v in schema["enum"]) + ")"
        longest = schema.get("maxLength")
        if isinstance(longest, int) and not isinstance(longest, bool) and longest >= 1:
            return f"text-char{{1,{longest}}}"
        return "text-char+"
    lines.append(namespaced(schema_grammar(schema), f"{rule}-"))
    return f"{rule}-root"


def _literal(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)
