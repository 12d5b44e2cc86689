"""A whole (non-streamed) chat answer assembled from the very chunks a stream relays, one
choice per index."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class _Choice:
    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    logprobs: list[dict[str, Any]] | None = None
    finish: str | None = None

    def add(self, choice: dict[str, Any]) -> None:
        delta = choice["delta"]
        if delta.get("content"):
            self.content.append(delta["content"])
        if delta.get("reasoning_content"):
            self.reasoning.append(delta["reasoning_content"])
        if delta.get("tool_calls"):
            self.tool_calls.extend(delta["tool_calls"])
        if choice.get("logprobs") is not None:
            if self.logprobs is None:
                self.logprobs = []
            self.logprobs.extend(choice["logprobs"]["content"])
        if choice.get("finish_reason"):
            self.finish = choice["finish_reason"]

    def json(self, index: int, want_logprobs: bool) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.content)}
        if self.tool_calls:
            message["content"] = message["content"] or None
            message["tool_calls"] = [{k: v for k, v in c.items() if k != "index"}
                                     for c in self.tool_calls]
        if self.reasoning:
            message["reasoning_content"] = "".join(self.reasoning)
        logprobs = self.logprobs if self.logprobs is not None else ([] if want_logprobs else None)
        return {"index": index, "message": message,
                "logprobs": {"content": logprobs} if logprobs is not None else None,
                "finish_reason": self.finish or "stop"}


async def whole_chat(chunks: AsyncGenerator[dict[str, Any], None], model: str,
                     want_logprobs: bool) -> dict[str, Any]:
    head: dict[str, Any] = {}
    usage: dict[str, Any] | None = None
    choices: dict[int, _Choice] = {}
    try:
        async for chunk in chunks:
            head = head or chunk
            if "usage" in chunk:
                usage = chunk["usage"]
            for choice in chunk["choices"]:
                choices.setdefault(choice.get("index", 0), _Choice()).add(choice)
    finally:
        await chunks.aclose()
    return {"id": head.get("id"), "object": "chat.completion", "created": head.get("created"),
            "model": model,
            "choices": [choices[i].json(i, want_logprobs) for i in sorted(choices)] or
            [_Choice().json(0, want_logprobs)],
            "usage": usage}
