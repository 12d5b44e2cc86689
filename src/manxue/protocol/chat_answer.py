"""An upstream's chat answer, read for translation into another API (Messages, Responses).

The chat route passes an answer on as the upstream wrote it; a translator has to read it, and
an upstream may write anything. These readers take each field only where it is shaped as a
chat completion says (a choice is an object, a text is a string, tool calls are a list of
objects), so that no answer can break a translator midway. A whole answer without a first
choice holding a message object is refused (502): there is nothing to translate.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import orjson

from manxue.errors import UpstreamError


class ToolCall(NamedTuple):
    index: Any  # the stream's index of the call (which pieces belong together)
    id: str
    name: str
    arguments: str  # JSON text, as chat completions carry it (an object some send is encoded)


def whole(data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The first choice of a whole chat completion and its message."""
    choices = data.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else None
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(choice, dict) or not isinstance(message, dict):
        raise UpstreamError(
            "the upstream's answer is not a chat completion (no choices[0].message object)",
            code="upstream_malformed",
            relay={"message": "the model's server sent an answer that is not a chat completion; "
                              "retry the request", "type": "upstream_error", "param": None,
                   "code": "upstream_malformed"})
    return choice, message


def deltas(chunk: dict[str, Any]) -> Iterator[tuple[dict[str, Any], Any]]:
    """The delta (an object, empty where it is not one) and finish reason of each choice 0 of
    a stream chunk: the other APIs carry one answer."""
    choices = chunk.get("choices")
    if not isinstance(choices, list):
        return
    for choice in choices:
        if isinstance(choice, dict) and choice.get("index", 0) == 0:
            delta = choice.get("delta")
            yield (delta if isinstance(delta, dict) else {}), choice.get("finish_reason")


def text(value: Any) -> str:
    """A text field (content, reasoning): itself if a string, else nothing."""
    return value if isinstance(value, str) else ""


def tool_calls(holder: dict[str, Any]) -> list[ToolCall]:
    """The tool calls of a message or delta that are shaped as ones."""
    calls = holder.get("tool_calls")
    if not isinstance(calls, list):
        return []
    out = []
    for call in calls:
        if isinstance(call, dict):
            fn = call.get("function")
            fn = fn if isinstance(fn, dict) else {}
            arguments = fn.get("arguments")
            if isinstance(arguments, dict):
                try:
                    arguments = orjson.dumps(arguments).decode()
                except orjson.JSONEncodeError:  # nested past what JSON here may hold
                    arguments = ""
            out.append(ToolCall(call.get("index", 0), text(call.get("id")), text(fn.get("name")),
                                text(arguments)))
    return out


def shown(value: Any) -> str:
    """An upstream's error message or code, to pass on as text: itself if a string, a number
    as written, else empty (an object may be nested deeper than str() or an encoder takes)."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return ""
