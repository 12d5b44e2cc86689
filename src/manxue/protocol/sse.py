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


def plain_text_line(line: bytes) -> tuple[bytes, str] | None:
    """The text of a relay line (`data: {chunk}\n\n`) holding the usual chunk of an answer, one
    that carries nothing but a text delta (one choice, index 0, a non-empty content string, no
    finish reason, usage, reasoning or tool calls), found without parsing the chunk: as the
    JSON string literal it came in (quotes and escapes included) and as text. None when the
    chunk is laid out otherwise, is empty, or names `usage` or `error` before its choices; the
    caller then parses it. A relay line holds one event (the relay passes on one upstream `data:`
    line at a time, and a JSON chunk holds no raw newline); two events in one line would lose
    the first's text."""
    span = _text_span(line)
    return None if span is None else _decoded(line[span[0]:span[1]])


def _text_span(line: bytes) -> tuple[int, int] | None:
    """Where the content string of a usual chunk's line starts and ends, if it is laid out as
    one (its text is not checked). The head is looked for from the end: outside the content
    it occurs once, and inside a string its quotes are escaped."""
    at = line.rfind(_PLAIN_HEAD)
    if (at < 0 or line.find(b'"usage"', 0, at) >= 0 or line.find(b'"error"', 0, at) >= 0
            or not line.startswith(b"data: ")):
        return None
    for tail in _PLAIN_TAILS:
        if line.endswith(tail):
            return at + len(_PLAIN_HEAD), len(line) - len(tail)
    return None


def _decoded(literal: bytes) -> tuple[bytes, str] | None:
    try:
        text = orjson.loads(literal)  # one string, or the chunk was not the usual one
    except orjson.JSONDecodeError:
        return None
    return (literal, text) if text and isinstance(text, str) else None


_FINISH_KEY = b'"finish_reason":'
_FINISHES = {b'"%s"' % r: r.decode() for r in (b"stop", b"length", b"tool_calls", b"content_filter")}
_EMPTY_DELTAS = (b"{}", b'{"content":""}')


class ChunkReader:
    """Reads one stream's usual chunks as plain_text_line does, and its bare finish chunk,
    without parsing them. The first usual chunk is found the long way; its bytes before and
    after the text (the id, creation time and model, up to the content string; the tail)
    are then kept, and a later line that starts and ends with those same bytes is read with
    two comparisons: between them it holds one JSON string or is not read at all. A line
    laid out otherwise is read the long way, and becomes the new pattern if it is usual."""

    __slots__ = ("_finish", "_prefix", "_tail")

    def __init__(self) -> None:
        self._prefix = self._tail = b"\n"  # starts no relay line: nothing kept yet
        self._finish: tuple[bytes, bytes, bytes] | None = None  # finish_reason's, once asked

    def text(self, line: bytes) -> tuple[bytes, str] | None:
        """What plain_text_line(line) is."""
        prefix, tail = self._prefix, self._tail
        if not (line.startswith(prefix) and line.endswith(tail)):
            span = _text_span(line)
            if span is None:
                return None
            prefix, tail = self._keep(line, *span)
        literal = line[len(prefix):len(line) - len(tail)]
        try:
            text = orjson.loads(literal)
        except orjson.JSONDecodeError:
            return None
        return (literal, text) if text and isinstance(text, str) else None

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
