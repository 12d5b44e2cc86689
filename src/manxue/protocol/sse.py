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


# the usual chunk, as DeepSeek, OpenAI and the local engine lay it out: one choice whose delta
# is only a content string, last in the chunk; as the relay passes it on (`data: …\n\n`)
_PLAIN_HEAD = b'"choices":[{"index":0,"delta":{"content":'
_PLAIN_TAILS = tuple(t + b"\n\n" for t in (b'},"logprobs":null,"finish_reason":null}]}',
                                            b'},"finish_reason":null}]}', b'},"logprobs":null}]}',
                                            b'}}]}'))


def plain_text_line(line: bytes) -> tuple[bytes, str] | None:
    """The text of a relay line (`data: {chunk}\n\n`) holding the usual chunk of an answer, one
    that carries nothing but a text delta (one choice, index 0, a non-empty content string, no
    finish reason, usage, reasoning or tool calls), found without parsing the chunk: as the
    JSON string literal it came in (quotes and escapes included) and as text. None when the
    chunk is laid out otherwise, is empty, or names `usage` before its choices; the caller
    then parses it. The head is looked for from the end: outside the content it occurs once,
    and inside a string its quotes are escaped. A relay line holds one event (the relay passes
    on one upstream `data:` line at a time, and a JSON chunk holds no raw newline); two events
    in one line would lose the first's text."""
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
