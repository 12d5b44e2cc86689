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
