"""A model's own tool-call format, when its chat template has one.

Four formats are read from templates:

- Hermes: templates that take `tools` and write calls as `<tool_call>{"name": ...,
  "arguments": {...}}</tool_call>` (Qwen2 and 2.5, Qwen3, Hermes, many fine-tunes); a forced
  call is sampled under a grammar for exactly that wrapping around the call's JSON, and the
  answer's `<tool_call>` blocks become OpenAI tool calls (several, in order).
- Llama 3 JSON: Llama 3.1 / 3.2 / 3.3 templates, which list the tools as JSON, ask for
  `{"name": ..., "parameters": {...}}` as the whole answer (optionally after `<|python_tag|>`)
  and give tool results the `ipython` role; a forced call is that object under a grammar, and
  an answer that is such objects (several separated by `;`, as Llama 3.2 writes them) becomes
  the tool calls.
- DeepSeek: the calls-block tokens of DeepSeek's templates (engine/tool_format_deepseek.py).
- Qwen XML: `<tool_call>` blocks holding `<function=…>` and `<parameter=…>` elements
  (Qwen3-Coder, Qwen 3.5; engine/tool_format_xml.py).

Either way the template renders the tools and the tool history itself. Any other template gets
the generic format of engine/tools.py.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable
from typing import Any

from manxue.engine import tool_format_deepseek as deepseek
from manxue.engine import tool_format_xml as xml

HERMES = "hermes"
LLAMA3_JSON = "llama3-json"
OPEN, CLOSE = "<tool_call>", "</tool_call>"
PYTHON_TAG = "<|python_tag|>"
_PROBE = {"manxue_probe": "value"}
_BLOCK = re.compile(re.escape(OPEN) + r"\s*(.*?)\s*" + re.escape(CLOSE), re.DOTALL)
_ROOT = re.compile(r"^root ::= ", re.MULTILINE)
_USES_TOOLS = re.compile(r"\btools\b")


def native_format(template_source: str) -> str | None:
    """The tool format a chat template writes itself, or None (the generic one applies).
    DeepSeek's templates write calls and results in their own tokens without rendering the
    tools (DeepSeek's API describes them in the system turn): see `shows_tools`."""
    found = deepseek.deepseek_format(template_source)
    if found is not None:
        return found
    if not shows_tools(template_source):
        return None
    found = xml.xml_format(template_source)  # Qwen3-Coder and 3.5's <function=…> blocks
    if found is not None:
        return found
    # Hermes writes JSON in its blocks; templates that write other XML there (GLM's <arg_key>,
    # MiniMax's) have no "arguments" key and get the generic format
    if OPEN in template_source and CLOSE in template_source and (
            '"arguments"' in template_source or '\\"arguments\\"' in template_source):
        return HERMES
    if "ipython" in template_source and '"parameters"' in template_source:
        return LLAMA3_JSON
    return None


def shows_tools(template_source: str) -> bool:
    """Whether a template renders the `tools` it is given."""
    return _USES_TOOLS.search(template_source) is not None


def arguments_as_text(render: Callable[[list[Any]], str]) -> bool:
    """Whether a template writes a call's arguments as it is given them (the wire's JSON text,
    as DeepSeek's first R1 template does) rather than encoding an object (`| tojson`, as
    Hermes, Llama and most DeepSeek templates do): found by rendering one call both ways.
    `render` renders messages (with a function in `tools`)."""
    for as_text in (False, True):
        args: Any = json.dumps(_PROBE) if as_text else dict(_PROBE)
        history = [{"role": "user", "content": "?"},
                   {"role": "assistant", "content": None, "tool_calls": [
                       {"id": "call_0", "type": "function",
                        "function": {"name": "probe", "arguments": args}}]},
                   {"role": "tool", "tool_call_id": "call_0", "content": "!"}]
        try:
            if json.dumps(_PROBE) in render(history):
                return as_text
        except Exception:  # a probe: a template that refuses one way may take the other
            continue
    return False


def is_deepseek(fmt: str | None) -> bool:
    return fmt in deepseek.FORMATS


def call_marker(fmt: str | None) -> str | None:
    """What opens a call in the format, where a model may write it after some text (Hermes,
    Qwen XML, DeepSeek); None where a call is the whole answer."""
    if fmt in (HERMES, xml.QWEN_XML):
        return OPEN
    return deepseek.CALLS_BEGIN if is_deepseek(fmt) else None


def markers(fmt: str | None) -> tuple[str, ...]:
    """Control tokens of the format that must reach the answer as text."""
    return deepseek.MARKERS if is_deepseek(fmt) else ()


def arguments_key(fmt: str | None) -> str:
    """The key a call's arguments go under in the format."""
    return "parameters" if fmt == LLAMA3_JSON else "arguments"


def wrap_grammar(gbnf: str, fmt: str = HERMES) -> str:
    """A call grammar (root: the call's JSON object) wrapped as the format writes a call."""
    if fmt == LLAMA3_JSON:
        return gbnf  # the object is the whole answer
    inner = _ROOT.sub("native-call ::= ", gbnf, count=1)
    return f'root ::= "{OPEN}\\n" native-call "\\n{CLOSE}"\n{inner}'


def template_tools(functions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The `tools` variable templates expect (OpenAI's shape)."""
    return [{"type": "function", "function": f} for f in functions]


def template_history(messages: list[Any], as_text: bool = False) -> list[Any]:
    """Assistant tool calls with their arguments as objects, as templates render them (the
    wire carries them as JSON text); with `as_text`, as the text (arguments_as_text)."""
    if as_text:
        return messages
    out: list[Any] = []
    for m in messages:
        if isinstance(m, dict) and m.get("role") == "assistant" and m.get("tool_calls"):
            calls = []
            for call in m["tool_calls"]:
                fn = dict(call.get("function") or {})
                if isinstance(fn.get("arguments"), str):
                    # not JSON: kept as text, the template writes what it was given
                    with contextlib.suppress(json.JSONDecodeError):
                        fn["arguments"] = json.loads(fn["arguments"] or "{}")
                calls.append({**call, "function": fn})
            out.append({**m, "tool_calls": calls})
        else:
            out.append(m)
    return out


def may_become_call(text: str, fmt: str = HERMES) -> bool:
    """Whether an answer so far may still turn out to open with a tool call."""
    if is_deepseek(fmt):
        return deepseek.may_become_call(text)
    head = text.lstrip()
    if fmt == LLAMA3_JSON:
        if head.startswith(PYTHON_TAG):
            head = head[len(PYTHON_TAG):].lstrip()
        elif PYTHON_TAG.startswith(head):
            return True
        return not head or head.startswith("{")
    return head.startswith(OPEN) or OPEN.startswith(head)


def parse_calls(text: str, names: tuple[str, ...], fmt: str = HERMES,
                schemas: dict[str, Any] | None = None) -> list[dict[str, Any]] | None:
    """The calls an answer makes — it is only calls in the format, each naming a known
    function — or None: the answer is text."""
    if fmt == LLAMA3_JSON:
        values = _json_objects(text.strip().removeprefix(PYTHON_TAG))
    elif is_deepseek(fmt):
        values = deepseek.parse(text)
    elif fmt == xml.QWEN_XML:
        values = xml.parse(text, schemas or {})
    else:
        blocks = _BLOCK.findall(text)
        if not blocks or _BLOCK.sub("", text).strip():
            return None
        values = []
        for block in blocks:
            try:
                values.append(json.loads(block))
            except json.JSONDecodeError:
                return None
    if not values:
        return None
    calls = [c for c in (_call(v, names) for v in values) if c is not None]
    return calls if len(calls) == len(values) else None


def _json_objects(text: str) -> list[Any]:
    """JSON values one after another, separated by `;` or white space; [] unless the text is
    only that."""
    decoder, at = json.JSONDecoder(), 0
    values: list[Any] = []
    while True:
        while at < len(text) and (text[at].isspace() or (values and text[at] == ";")):
            at += 1
        if at == len(text):
            return values
        try:
            value, at = decoder.raw_decode(text, at)
        except json.JSONDecodeError:
            return []
        values.append(value)


def _call(value: Any, names: tuple[str, ...]) -> dict[str, Any] | None:
    """One call (`name` a known function; `arguments` or `parameters` an object, or JSON text
    of one) in OpenAI's shape, or None."""
    if not isinstance(value, dict) or value.get("name") not in names:
        return None
    args = value.get("arguments", value.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            return None
    if not isinstance(args, dict):
        return None
    return {"name": value["name"], "arguments": json.dumps(args, ensure_ascii=False)}
