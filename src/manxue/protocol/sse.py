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
_PLAIN_CONTENT = b'{"content":'
_PLAIN_HEAD = b'"choices":[{"index":0,"delta":' + _PLAIN_CONTENT
_PLAIN_TAILS = tuple(t + b"\n\n" for t in (b'},"logprobs":null,"finish_reason":null}]}',
                                            b'},"finish_reason":null}]}', b'},"logprobs":null}]}',
                                            b'}}]}'))


def _text_span(line: bytes) -> tuple[int, int] | None:
    """Where the content string of a relay line (`data: {chunk}\n\n`) starts and ends, if the
    line is laid out as the usual chunk (nothing else is checked). The head is looked for
    from the end: outside the content it occurs once, and inside a string its quotes are
    escaped."""
    at = line.rfind(_PLAIN_HEAD)
    if at < 0 or line.find(b'"usage"', 0, at) >= 0 or not line.startswith(b"data: "):
        return None
    for tail in _PLAIN_TAILS:
        if line.endswith(tail):
            return at + len(_PLAIN_HEAD), len(line) - len(tail)
    return None


def _usual(line: bytes) -> bool:
    """Whether a line laid out as the usual chunk (_text_span) is one, by parsing it: one JSON
    object, neither failing (`error`) nor carrying usage, whatever the escapes in its keys."""
    try:
        chunk = orjson.loads(line[6:])
    except orjson.JSONDecodeError:
        return False
    return isinstance(chunk, dict) and "error" not in chunk and not chunk.get("usage")


_FINISH_KEY = b'"finish_reason":'
_FINISHES = {b'"%s"' % r: r.decode() for r in (b"stop", b"length", b"tool_calls", b"content_filter")}
_EMPTY_DELTAS = (b"{}", b'{"content":""}')


class ChunkReader:
    """Reads one stream's usual chunks, and its bare finish chunk, without parsing each. The
    first usual chunk is found and parsed; its bytes before and after the text (the id,
    creation time and model, up to the content string; the tail) are then kept, and a later
    line that starts and ends with those same bytes is read with two comparisons: between
    them it holds one JSON string or is not read at all. A line laid out otherwise is read
    the long way, and becomes the kept layout if it is usual. A relay line holds one event
    (the relay passes on one upstream `data:` line at a time)."""

    __slots__ = ("_finish", "_prefix", "_tail")

    def __init__(self) -> None:
        self._prefix = self._tail = b"\n"  # starts no relay line: nothing kept yet
        self._finish: tuple[bytes, bytes, bytes] | None = None  # finish_reason's, once asked

    def text(self, line: bytes) -> tuple[bytes, str] | None:
        """The text of a relay line holding the usual chunk of an answer: one that carries
        nothing but a text delta (one choice, index 0, a non-empty content string, no finish
        reason, usage, error, reasoning or tool calls), as a JSON string literal in canonical
        form and as text; None for any other line (the caller then parses it). The first line
        of a layout is parsed once to be sure of it; the literal is passed on as it came
        unless it holds an escape (re-encoded, so odd escapes such as `\\u003c` or `\\/` do
        not reach the client) or anything around the string."""
        prefix, tail = self._prefix, self._tail
        if not (line.startswith(prefix) and line.endswith(tail)):
            span = _text_span(line)
            if span is None or not _usual(line):
                return None
            prefix, tail = self._keep(line, *span)
        literal = line[len(prefix):len(line) - len(tail)]
        try:
            text = orjson.loads(literal)
        except orjson.JSONDecodeError:
            return None
        if not text or not isinstance(text, str):
            return None
        if 92 in literal or literal[0] != 34 or literal[-1] != 34:  # a backslash; quotes
            literal = orjson.dumps(text)
        return literal, text

    def finish_reason(self, line: bytes) -> str | None:
        """The finish reason of a line laid out as the kept usual chunk but for an empty delta
        (`{}` or an empty content) and a finish reason (stop, length, tool_calls or
        content_filter) where the usual chunk has null; None for any other line."""
        finish = self._finish
        if finish is None:
            finish = self._finish = self._finish_layout()
        choice, before, after = finish
        if not line.startswith(choice):
            return None
        at = len(choice)
        for empty in _EMPTY_DELTAS:
            if line.startswith(empty, at):
                at += len(empty)
                break
        else:
            return None
        if not line.startswith(before, at) or not line.endswith(after):
            return None
        return _FINISHES.get(line[at + len(before):len(line) - len(after)])

    def _finish_layout(self) -> tuple[bytes, bytes, bytes]:
        """The kept chunk up to its delta, and after it up to and from the finish reason."""
        before, null, after = self._tail[1:].partition(_FINISH_KEY + b"null")
        if not null:  # no finish reason in the usual chunk (or none kept): no line matches
            return b"\n", b"", b""
        return self._prefix[:-len(_PLAIN_CONTENT)], before + _FINISH_KEY, after

    def _keep(self, line: bytes, start: int, end: int) -> tuple[bytes, bytes]:
        self._prefix, self._tail, self._finish = line[:start], line[end:], None
        return self._prefix, self._tail
