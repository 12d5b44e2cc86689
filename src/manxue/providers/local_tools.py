"""Turning the local engine's answer into OpenAI tool calls (engine/tools.py's generic format,
or the template's own: engine/tool_formats.py).

While an answer may be a tool call, its text is held back; at the end it is either the calls
(`tool_calls` in a single delta, finish_reason `tool_calls`) or released as plain text. In
`auto` mode the hold ends as soon as the answer cannot be a call any more (it starts with
anything but `{`, or, in the template's format, anything its calls cannot start with), and the text
streams as usual from there.
"""

from __future__ import annotations

import uuid
from typing import Any

from manxue.engine.tool_formats import may_become_call, parse_calls
from manxue.engine.tools import parse_call


class ToolCallBuffer:
    def __init__(self, mode: str | None, names: tuple[str, ...], fmt: str | None = None) -> None:
        self.names = names
        self.native = fmt
        self.holding = mode is not None
        self.auto = mode == "auto"
        self.text: list[str] = []
        self.logprobs: list[dict[str, Any]] = []

    def feed(self, content: str, logprobs: list[dict[str, Any]]
             ) -> tuple[str, list[dict[str, Any]]]:
        """What may be sent now of a piece of the answer (text and its logprob entries)."""
        if not self.holding:
            return content, logprobs
        self.text.append(content)
        self.logprobs += logprobs
        held = "".join(self.text)
        if self.auto and held.strip() and not self._may_be_call(held):
            self.holding = False  # plain text after all: release what was held
            out, lps = held, self.logprobs
            self.text, self.logprobs = [], []
            return out, lps
        return "", []

    def finish(self, reason: str) -> tuple[dict[str, Any], list[dict[str, Any]], str]:
        """The last delta (a tool call, or the text still held), its logprobs, the finish
        reason."""
        if not self.holding:
            return {}, [], reason
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
            return parse_calls(held, self.names, self.native)
        call = parse_call(held.strip(), self.names)
        return [call] if call is not None else None
