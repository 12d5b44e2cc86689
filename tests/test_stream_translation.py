"""The Messages and Responses translators read the usual chat chunk without parsing it
(sse.plain_text_line): their events must be byte for byte those of the parsed path, for the
usual chunks and for every chunk that only looks like one."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from manxue.protocol import anthropic, responses_stream, sse
from manxue.protocol.sse import plain_text_line


def plain_text(chunk: dict[str, Any]) -> str | None:
    """The reference for plain_text_line, on the parsed chunk: the text of a chunk that
    carries nothing else — one choice (index 0), a content delta, no finish reason, no usage,
    no reasoning or tool calls — else None."""
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
    found = plain_text_line(b"data: " + payload + b"\n\n")
    assert found is not None
    literal, text = found
    assert text == plain_text(orjson.loads(payload)) and orjson.loads(literal) == text


@pytest.mark.parametrize("payload", UNUSUAL)
def test_anything_else_is_left_to_the_parser(payload: bytes):
    assert plain_text_line(b"data: " + payload + b"\n\n") is None


def _events(make: Any, lines: list[bytes], fast: bool, monkeypatch: pytest.MonkeyPatch) -> bytes:
    with monkeypatch.context() as m:
        if not fast:
            for module in (anthropic, responses_stream):
                m.setattr(module, "plain_text_line", lambda line: None)
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


REQUESTS = [
    {},
    {"instructions": "be brief", "max_output_tokens": 64, "previous_response_id": "resp_0",
     "temperature": 0.2, "top_p": 0.9, "store": False, "metadata": {"k": "v"},
     "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
     "tool_choice": "required", "parallel_tool_calls": False,
     "text": {"format": {"type": "json_object"}}},
]
ANSWERS = {
    "text": [_chunk({"content": "one "}), _chunk({"content": 'two "quoted" 满血'})],
    "reasoning then text": [_chunk({"reasoning_content": "think"}), _chunk({"content": "so"})],
    "text then a call": [_chunk({"content": "calling"}), _chunk({"tool_calls": [
        {"index": 0, "id": "call_1", "function": {"name": "f", "arguments": "{}"}}]})],
    "text, a call, text again": [
        _chunk({"content": "first"}),
        _chunk({"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "f",
                                                                        "arguments": "{}"}}]}),
        _chunk({"content": "second"})],
    "reasoning, text, reasoning, text": [
        _chunk({"reasoning_content": "one"}), _chunk({"content": "two"}),
        _chunk({"reasoning_content": "three"}), _chunk({"content": "four"})],
    "cut at the limit": [_chunk({"content": "cut"}), _chunk({}, finish_reason="length")],
    "nothing": [],
}


@pytest.mark.parametrize("data", REQUESTS, ids=["bare request", "every setting"])
@pytest.mark.parametrize("answer", list(ANSWERS), ids=list(ANSWERS))
def test_responses_events_are_the_objects_encoded(data: dict[str, Any], answer: str):
    """The Responses stream assembles its snapshots and message items from pieces encoded once:
    every event must still be the canonical encoding of the object the API describes."""
    stream = responses_stream.ResponsesStream("resp_1", data, "deepseek-chat")
    usage = orjson.dumps({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 9,
                                                   "total_tokens": 12}})
    lines = [b"data: " + p + b"\n\n" for p in [*ANSWERS[answer], usage]] + [sse.DONE]
    events = [e for line in lines for e in stream.feed(line)]
    for e in events:
        data_line = e.split(b"\ndata: ", 1)[1].rstrip(b"\n")
        assert orjson.dumps(orjson.loads(data_line)) == data_line
    for status in ("in_progress", "completed", "failed"):
        assert stream._snapshot_json(status) == orjson.dumps(stream._snapshot(status))
    last = orjson.loads(events[-1].split(b"\ndata: ", 1)[1])
    assert last["response"] == stream.final()
    items = [orjson.loads(e.split(b"\ndata: ", 1)[1])["item"] for e in events
             if e.startswith(b"event: response.output_item.done")]
    output = stream.final()["output"]
    assert items == output if items else [i["type"] for i in output] == ["message"]
    assert len({i["id"] for i in output}) == len(output)  # a message after a call is a new item


_TEXT = st.text(alphabet=st.sampled_from([*'ab "\\/\n\t{}[]:,', "满", "🙂", "\u2028", "\x01"]),
                min_size=0, max_size=12) | st.sampled_from(
    ['"choices":[{"index":0,"delta":{"content":"x"}}]}', '"usage"', "}]}"])


@st.composite
def _relay_lines(draw: st.DrawFn) -> list[bytes]:
    """Chat chunks as upstreams lay them out, usual or not, each as the relay passes it on."""
    lines = []
    for _ in range(draw(st.integers(1, 6))):
        delta: dict[str, Any] = {"content": draw(_TEXT)}
        if draw(st.booleans()) and draw(st.booleans()):
            delta = {draw(st.sampled_from(["role", "reasoning_content", "x"])): "v", **delta}
        choice: dict[str, Any] = {"index": draw(st.sampled_from([0, 0, 0, 1])), "delta": delta}
        for key in draw(st.lists(st.sampled_from(["logprobs", "finish_reason"]), unique=True)):
            choice[key] = draw(st.sampled_from([None, None, "stop"]))
        chunk: dict[str, Any] = {"id": draw(_TEXT), "choices": [choice]}
        usage = {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
        where = draw(st.sampled_from(["none", "none", "before", "after"]))
        if where == "before":
            chunk = {"usage": usage, **chunk}
        elif where == "after":
            chunk["usage"] = usage
        lines.append(b"data: " + orjson.dumps(chunk) + b"\n\n")
    return lines


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=_relay_lines())
@pytest.mark.parametrize("make", [lambda: anthropic.MessagesStream("deepseek-chat"),
                                  lambda: responses_stream.ResponsesStream("resp_1", {}, "deepseek-chat")],
                         ids=["messages", "responses"])
def test_no_chunk_an_upstream_sends_makes_the_short_path_differ(
        make: Any, lines: list[bytes], monkeypatch: pytest.MonkeyPatch):
    """Whatever the text holds (quotes, escapes, the head's own bytes, control characters) and
    however the chunk is laid out, the short path writes what the parser would."""
    start = b"data: " + _chunk({"role": "assistant", "content": "open"}) + b"\n\n"
    stream_lines = [start, *lines, sse.DONE]
    assert _events(make, stream_lines, True, monkeypatch) == _events(make, stream_lines, False,
                                                                     monkeypatch)


def test_a_message_after_a_call_is_its_own_item():
    """Text, a call, more text: three items in the order streamed, each message with its own
    text and id; the history a later response continues holds the whole text."""
    stream = responses_stream.ResponsesStream("resp_1", {}, "deepseek-chat")
    lines = [b"data: " + p + b"\n\n" for p in ANSWERS["text, a call, text again"]] + [sse.DONE]
    for line in lines:
        stream.feed(line)
    output = stream.final()["output"]
    assert [(i["type"], i["id"]) for i in output] == [
        ("message", "msg_1"), ("function_call", "fc_1_0"), ("message", "msg_1_1")]
    assert [i["content"][0]["text"] for i in output if i["type"] == "message"] == [
        "first", "second"]
    assert stream.answer.message()["content"] == "firstsecond"
