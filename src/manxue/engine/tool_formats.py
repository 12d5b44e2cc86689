"""A model's own tool-call format, when its chat template has one.

Templates that take `tools` and write calls as `<tool_call>{"name": ..., "arguments": {...}}
</tool_call>` (the Hermes format: Qwen2 and 2.5, Qwen3, Hermes, many fine-tunes) are served in
that format: the template renders the tools and the tool history itself, a forced call is
sampled under a grammar for exactly that wrapping around the call's JSON, and the answer's
`<tool_call>` blocks become OpenAI tool calls (several, in order). Any other template gets the
generic format of engine/tools.py.
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

HERMES = "hermes"
OPEN, CLOSE = "<tool_call>", "</tool_call>"
_BLOCK = re.compile(re.escape(OPEN) + r"\s*(.*?)\s*" + re.escape(CLOSE), re.DOTALL)
_ROOT = re.compile(r"^root ::= ", re.MULTILINE)
_USES_TOOLS = re.compile(r"\btools\b")


def native_format(template_source: str) -> str | None:
    """The tool format a chat template writes itself, or None (the generic one applies)."""
    if OPEN in template_source and CLOSE in template_source and _USES_TOOLS.search(template_source):
        return HERMES
    return None


def wrap_grammar(gbnf: str) -> str:
    """A call grammar (root: the call's JSON object) wrapped in the format's tags."""
    inner = _ROOT.sub("native-call ::= ", gbnf, count=1)
    return f'root ::= "{OPEN}\\n" native-call "\\n{CLOSE}"\n{inner}'


def template_tools(functions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The `tools` variable templates expect (OpenAI's shape)."""
    return [{"type": "function", "function": f} for f in functions]


def template_history(messages: list[Any]) -> list[Any]:
    """Assistant tool calls with their arguments as objects, as templates render them (the
    wire carries them as JSON text)."""
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


def may_become_call(text: str) -> bool:
    """Whether an answer so far may still turn out to open with a tool call."""
    head = text.lstrip()
    return head.startswith(OPEN) or OPEN.startswith(head)


def parse_calls(text: str, names: tuple[str, ...]) -> list[dict[str, Any]] | None:
    """The calls an answer makes — it is only `<tool_call>` blocks, each naming a known
    function — or None: the answer is text."""
    blocks = _BLOCK.findall(text)
    if not blocks or _BLOCK.sub("", text).strip():
        return None
    calls = []
    for block in blocks:
        try:
            value = json.loads(block)
        except json.JSONDecodeError:
            return None
        if not isinstance(value, dict) or value.get("name") not in names:
            return None
        args = value.get("arguments", {})
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except json.JSONDecodeError:
                return None
        if not isinstance(args, dict):
            return None
        calls.append({"name": value["name"], "arguments": json.dumps(args, ensure_ascii=False)})
    return calls
