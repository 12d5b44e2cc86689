"""The Messages and Responses translators read the usual chat chunk without parsing it
(sse.plain_text_json): their events must be byte for byte those of the parsed path, for the
usual chunks and for every chunk that only looks like one."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from manxue.protocol import anthropic, responses_stream, sse
from manxue.protocol.sse import plain_text, plain_text_json


def _chunk(delta: dict[str, Any], *, head: dict[str, Any] | None = None,
           tail: dict[str, Any] | None = None, **choice: Any) -> bytes:
    body = {**(head or {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
                        "model": "deepseek-chat"}),
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None,
                         **choice}], **(tail or {})}
    return orjson.dumps(body)


USUAL = [
    _chunk({"content": "plain words "}),
    _chunk({"content": 'quotes " and \\ backslashes \n newlines \t tabs'}),
    _chunk({"content": "满血 ünïcödé 🙂 \u2028"}),
    _chunk({"content": '"usage" inside the text, "error" too'}),
    orjson.dumps({"choices": [{"index": 0, "delta": {"content": "no logprobs field"},
                               "finish_reason": None}]}),
    orjson.dumps({"choices": [{"index": 0, "delta": {"content": "bare"}}]}),
]
UNUSUAL = [
    _chunk({"content": ""}),
    _chunk({"role": "assistant", "content": "with a role"}),
    _chunk({"content": "with reasoning", "reasoning_content": "hmm"}),
    _chunk({"content": "and a finish"}, finish_reason="stop"),
    _chunk({"content": "usage after"}, tail={"usage": {"prompt_tokens": 1, "completion_tokens": 1,
                                                       "total_tokens": 2}}),
    _chunk({"content": "usage before"}, head={"usage": {"prompt_tokens": 1, "completion_tokens": 1,
                                                        "total_tokens": 2}}),
    _chunk({"content": "then another key", "x": "y"}),
    orjson.dumps({"choices": [{"index": 0, "delta": {"content": "two"}, "finish_reason": None},
                              {"index": 1, "delta": {"content": "choices"}, "finish_reason": None}]}),
    orjson.dumps({"choices": [{"index": 1, "delta": {"content": "second only"}}]}),
]


@pytest.mark.parametrize("payload", USUAL)
def test_the_usual_chunk_is_read_without_parsing(payload: bytes):
    found = plain_text_json(payload)
    assert found is not None
    literal, text = found
    assert text == plain_text(orjson.loads(payload)) and orjson.loads(literal) == text


@pytest.mark.parametrize("payload", UNUSUAL)
def test_anything_else_is_left_to_the_parser(payload: bytes):
    assert plain_text_json(payload) is None


def _events(make: Any, lines: list[bytes], fast: bool, monkeypatch: pytest.MonkeyPatch) -> bytes:
    with monkeypatch.context() as m:
        if not fast:
            for module in (anthropic, responses_stream):
                m.setattr(module, "plain_text_json", lambda payload: None)
        stream = make()
        if isinstance(stream, responses_stream.ResponsesStream):
            stream.created = 0  # the two runs may straddle a second
        return b"".join(b"".join(stream.feed(line)) for line in lines)


@pytest.mark.parametrize("make", [lambda: anthropic.MessagesStream("deepseek-chat"),
                                  lambda: responses_stream.ResponsesStream("resp_1", {}, "deepseek-chat")],
                         ids=["messages", "responses"])
def test_the_short_path_changes_no_byte(make: Any, monkeypatch: pytest.MonkeyPatch):
    start = _chunk({"role": "assistant", "content": ""})
    usage = orjson.dumps({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 9,
                                                   "total_tokens": 12}})
    payloads = [start, *USUAL, *UNUSUAL, *USUAL, _chunk({}, finish_reason="stop"), usage]
    lines = [b"data: " + p + b"\n\n" for p in payloads] + [sse.DONE]
    fast = _events(make, lines, True, monkeypatch)
    assert fast == _events(make, lines, False, monkeypatch)
    assert "满血 ünïcödé 🙂".encode() in fast or b"\\u" in fast
