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


# the usual chunk, as DeepSeek, OpenAI and the local engine lay it out: one choice whose delta
# is only a content string, last in the chunk; as the relay passes it on (`data: …\n\n`)
_PLAIN_HEAD = b'"choices":[{"index":0,"delta":{"content":'
_PLAIN_TAILS = tuple(t + b"\n\n" for t in (b'},"logprobs":null,"finish_reason":null}]}',
                                            b'},"finish_reason":null}]}', b'},"logprobs":null}]}',
                                            b'}}]}'))


def plain_text_line(line: bytes) -> tuple[bytes, str] | None:
    """What `plain_text` finds in a relay line (`data: {chunk}\n\n`) holding the usual chunk,
    found without parsing the chunk: its content as the JSON string literal it came in (quotes
    and escapes included) and as text. None when the chunk is laid out otherwise, is empty, or
    names `usage` before its choices; the caller then parses it. The head is looked for from
    the end: outside the content it occurs once, and inside a string its quotes are escaped.
    A relay line holds one event (the relay passes on one upstream `data:` line at a time, and
    a JSON chunk holds no raw newline); two events in one line would lose the first's text."""
    at = line.rfind(_PLAIN_HEAD)
    if at < 0 or line.find(b'"usage"', 0, at) >= 0 or not line.startswith(b"data: "):
        return None
    for tail in _PLAIN_TAILS:
        if line.endswith(tail):
            break
    else:
        return None
    literal = line[at + len(_PLAIN_HEAD): len(line) - len(tail)]
    try:
        text = orjson.loads(literal)  # one string, or the chunk was not the usual one
    except orjson.JSONDecodeError:
        return None
    return (literal, text) if text and isinstance(text, str) else None
