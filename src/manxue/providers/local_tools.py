"""Turning the local engine's answer into OpenAI tool calls (engine/tools.py's format).

While an answer may be a tool call, its text is held back; at the end it is either one call
(`tool_calls` in a single delta, finish_reason `tool_calls`) or released as plain text. In
`auto` mode the hold ends as soon as the answer starts with anything but `{`, and the text
streams as usual from there.
"""

from __future__ import annotations

import uuid
from typing import Any

from manxue.engine.tools import parse_call


class ToolCallBuffer:
    def __init__(self, mode: str | None, names: tuple[str, ...]) -> None:
        self.names = names
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
        if self.auto and held.strip() and not held.lstrip().startswith("{"):
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
        call = parse_call(held.strip(), self.names) if reason == "stop" else None
        if call is None:
            return ({"content": held} if held else {}), self.logprobs, reason
        delta = {"tool_calls": [{"index": 0, "id": "call_" + uuid.uuid4().hex[:24],
                                 "type": "function", "function": call}]}
        return delta, self.logprobs, "tool_calls"
