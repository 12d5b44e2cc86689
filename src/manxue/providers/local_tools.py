"""Turning the local engine's answer into OpenAI tool calls (engine/tools.py's generic format,
or the template's own: engine/tool_formats.py).

While an answer may be a tool call, its text is held back; at the end it is either the calls
(`tool_calls` in a single delta, finish_reason `tool_calls`) or released as plain text. In
`auto` mode the hold ends as soon as the answer cannot be a call any more (it starts with
anything but `{`, or, in the template's format, anything its calls cannot start with), and the
text streams as usual from there. In the formats whose calls a model may write after some
text (Hermes' and Qwen XML's `<tool_call>`, DeepSeek's calls block) the streamed text is
watched for that opening: the text before it is the answer's content, what follows is held as
its calls (a piece of text that may be the opening's beginning waits for the next piece).
"""

from __future__ import annotations

import uuid
from typing import Any

from manxue.engine.tool_formats import call_marker, may_become_call, parse_calls
from manxue.engine.tools import parse_call


class ToolCallBuffer:
    def __init__(self, mode: str | None, names: tuple[str, ...], fmt: str | None = None,
                 schemas: dict[str, Any] | None = None) -> None:
        self.names = names
        self.schemas = schemas or {}
        self.native = fmt
        self.holding = mode is not None
        self.auto = mode == "auto"
        self.marker = call_marker(fmt) if self.auto else None
        self.text: list[str] = []
        self.logprobs: list[dict[str, Any]] = []
        self._tail = ""  # streamed text held back: it may be the start of `marker`
        self._tail_logprobs: list[dict[str, Any]] = []

    def feed(self, content: str, logprobs: list[dict[str, Any]]
             ) -> tuple[str, list[dict[str, Any]]]:
        """What may be sent now of a piece of the answer (text and its logprob entries)."""
        if not self.holding:
            return self._watch(content, logprobs) if self.marker else (content, logprobs)
        self.text.append(content)
        self.logprobs += logprobs
        held = "".join(self.text)
        if self.auto and held.strip() and not self._may_be_call(held):
            self.holding = False  # plain text after all: release what was held
            out, lps = held, self.logprobs
            self.text, self.logprobs = [], []
            return self._watch(out, lps) if self.marker else (out, lps)
        return "", []

    def _watch(self, content: str, logprobs: list[dict[str, Any]]
               ) -> tuple[str, list[dict[str, Any]]]:
        """Streamed text up to the call marker, if one appears: from it on, the answer is held
        as calls."""
        assert self.marker is not None
        text, lps = self._tail + content, self._tail_logprobs + logprobs
        self._tail, self._tail_logprobs = "", []
        at = text.find(self.marker)
        if at >= 0:
            self.holding = True
            self.text = [text[at:]]
            return text[:at], lps
        keep = _opening_kept(text, self.marker)
        if keep:  # its logprob entries wait with it (a token's entry is not split)
            self._tail, self._tail_logprobs = text[-keep:], lps
            return text[:-keep], []
        return text, lps

    def finish(self, reason: str) -> tuple[dict[str, Any], list[dict[str, Any]], str]:
        """The last delta (a tool call, or the text still held), its logprobs, the finish
        reason."""
        if not self.holding:
            tail, lps = self._tail, self._tail_logprobs
            self._tail, self._tail_logprobs = "", []
            return ({"content": tail} if tail else {}), lps, reason
        held = "".join(self.text)
        calls = self._calls(held) if reason == "stop" else None
        if not calls:
            return ({"content": held} if held else {}), self.logprobs, reason
        delta = {"tool_calls": [{"index": i, "id": "call_" + uuid.uuid4().hex[:24],
                                 "type": "function", "function": call}
                                for i, call in enumerate(calls)]}
        return delta, self.logprobs, "tool_calls"

    def _may_be_call(self, held: str) -> bool:
        if self.native is not None:
            return may_become_call(held, self.native)
        return held.lstrip().startswith("{")

    def _calls(self, held: str) -> list[dict[str, Any]] | None:
        if self.native is not None:
            return parse_calls(held, self.names, self.native, self.schemas)
        call = parse_call(held.strip(), self.names)
        return [call] if call is not None else None


def _opening_kept(text: str, marker: str) -> int:
    """How much of the end of `text` may be the beginning of `marker`."""
    for k in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:k]):
            return k
    return 0
