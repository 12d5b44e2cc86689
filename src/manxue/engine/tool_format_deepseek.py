"""DeepSeek's own tool-call tokens, for templates that write them (engine/tool_formats.py).

A DeepSeek template wraps an answer's calls in `<｜tool▁calls▁begin｜>` … `<｜tool▁calls▁end｜>`,
each call in `<｜tool▁call▁begin｜>` … `<｜tool▁call▁end｜>`, in one of two layouts:

- V3.1 and later (`deepseek`): `NAME<｜tool▁sep｜>{"city": "Oslo"}`;
- V3 and R1 (`deepseek-r1`): `function<｜tool▁sep｜>NAME` then the arguments in a json code fence.

Both layouts are read back from any DeepSeek model; a forced call is sampled in the layout the
template writes, its arguments under the grammar of the function's `parameters`. These markers
are control tokens in DeepSeek's GGUFs, which a detokenizer drops: the engine renders them as
text for such a model (MARKERS), so that the calls can be found.
"""

from __future__ import annotations

import json
import re
from typing import Any

from manxue.engine.grammar import namespaced, schema_grammar

DEEPSEEK = "deepseek"
DEEPSEEK_R1 = "deepseek-r1"
FORMATS = (DEEPSEEK, DEEPSEEK_R1)
CALLS_BEGIN, CALLS_END = "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"
CALL_BEGIN, CALL_END = "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>"
SEP = "<｜tool▁sep｜>"
MARKERS = (CALLS_BEGIN, CALLS_END, CALL_BEGIN, CALL_END, SEP)
_FENCE = "```json"
_CALL = re.compile(
    re.escape(CALL_BEGIN) + r"\s*(?:function" + re.escape(SEP) + r"(?P<fn>[^\n]+?)\s*\n```json\s*"
    r"(?P<fargs>.*?)\s*```|(?P<name>[^\n]+?)" + re.escape(SEP) + r"(?P<args>.*?))\s*"
    + re.escape(CALL_END), re.DOTALL)

def deepseek_format(template_source: str) -> str | None:
    """The DeepSeek layout a template writes, or None for another template."""
    if CALLS_BEGIN not in template_source or CALL_BEGIN not in template_source:
        return None
    return DEEPSEEK_R1 if _FENCE in template_source else DEEPSEEK


def system_text(functions: list[dict[str, Any]], fmt: str) -> str:
    """The functions described in the system turn, with the calls block to write, for a
    DeepSeek template that does not render `tools` itself."""
    if fmt == DEEPSEEK_R1:
        call = f"{CALL_BEGIN}function{SEP}NAME\n{_FENCE}\nARGUMENTS\n```{CALL_END}"
    else:
        call = f"{CALL_BEGIN}NAME{SEP}ARGUMENTS{CALL_END}"
    lines = ["## Tools", "You can call the functions below. To call, answer with only this "
             "block, ARGUMENTS being a JSON object (several calls: several "
             f"{CALL_BEGIN}…{CALL_END} in the block):", f"{CALLS_BEGIN}{call}{CALLS_END}", ""]
    for fn in functions:
        lines += [f"### {fn['name']}", f"Description: {fn.get('description') or ''}",
                  f"Parameters: {json.dumps(fn.get('parameters') or {}, ensure_ascii=False)}", ""]
    return "\n".join(lines).rstrip()


def may_become_call(text: str) -> bool:
    head = text.lstrip()
    return head.startswith(CALLS_BEGIN) or CALLS_BEGIN.startswith(head)


def parse(text: str) -> list[Any]:
    """The calls of an answer that is only a calls block, as {"name", "arguments"} values
    (arguments still JSON text); [] when the answer is anything else."""
    body = text.strip()
    if not body.startswith(CALLS_BEGIN):
        return []
    body = body[len(CALLS_BEGIN):].strip().removesuffix(CALLS_END).strip()
    values: list[Any] = []
    at = 0
    for m in _CALL.finditer(body):
        if body[at:m.start()].strip():
            return []
        name = m.group("fn") if m.group("fn") is not None else m.group("name")
        args = m.group("fargs") if m.group("fn") is not None else m.group("args")
        values.append({"name": name.strip(), "arguments": args.strip()})
        at = m.end()
    return values if values and not body[at:].strip() else []


def forced_grammar(fmt: str, functions: list[dict[str, Any]]) -> str:
    """GBNF for one call of one of `functions`, in the format's layout, each function's
    arguments under its `parameters` schema (InvalidParameters for a schema it cannot
    honour, as for any grammar)."""
    lines = [f"root ::= {_literal(CALLS_BEGIN)} call {_literal(CALLS_END)}",
             "call ::= " + " | ".join(f"fn{i}" for i in range(len(functions)))]
    for i, fn in enumerate(functions):
        if fmt == DEEPSEEK_R1:
            head, tail = f"{CALL_BEGIN}function{SEP}{fn['name']}\n{_FENCE}\n", f"\n```{CALL_END}"
        else:
            head, tail = f"{CALL_BEGIN}{fn['name']}{SEP}", CALL_END
        lines.append(f"fn{i} ::= {_literal(head)} fn{i}-root {_literal(tail)}")
        lines.append(namespaced(schema_grammar(fn.get("parameters") or {}), f"fn{i}-"))
    return "\n".join(lines) + "\n"


def _literal(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)
