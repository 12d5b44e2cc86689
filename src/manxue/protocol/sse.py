"""Server-sent events framing, as OpenAI and DeepSeek stream it."""

from __future__ import annotations

from typing import Any

import orjson

DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": keep-alive\n\n"


def data_event(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def error_event(message: str, code: str = "upstream_error", type_: str = "upstream_error") -> bytes:
    """The event a client sees when a stream breaks after it started."""
    return data_event({"error": {"message": message, "type": type_, "param": None, "code": code}})


def plain_text(chunk: dict[str, Any]) -> str | None:
    """The text of a chat chunk that carries nothing else — one choice (index 0), a content
    delta, no finish reason, no usage, no reasoning or tool calls — else None. Most chunks of
    an answer are such; translators take a short path for them."""
    choices = chunk.get("choices")
    if not choices or len(choices) != 1 or chunk.get("usage"):
        return None
    choice = choices[0]
    if not isinstance(choice, dict) or choice.get("finish_reason") or choice.get("index", 0):
        return None
    delta = choice.get("delta")
    if not isinstance(delta, dict):
        return None
    text = delta.get("content")
    if not text or not isinstance(text, str):
        return None
    for key, value in delta.items():
        if value and key != "content" and key != "role":
            return None
    return text
