"""The Messages and Responses translators read the usual chat chunk without parsing it
(sse.ChunkReader): their events must be byte for byte those of the parsed path, for the
usual chunks and for every chunk that only looks like one."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from manxue.protocol import anthropic, responses_stream, sse


def plain_text_line(line: bytes) -> tuple[bytes, str] | None:
    """A line read alone, by a reader that has kept no layout yet."""
    return sse.ChunkReader().text(line)


def plain_text(chunk: dict[str, Any]) -> str | None:
    """The reference for ChunkReader.text, on the parsed chunk: the text of a chunk that
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
            m.setattr(sse.ChunkReader, "text", lambda self, line: None)
            m.setattr(sse.ChunkReader, "finish_reason", lambda self, line: None)
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


MESSAGES_ANSWERS = {k: v for k, v in ANSWERS.items() if "reasoning, text, reasoning" not in k}


@pytest.mark.parametrize("answer", list(MESSAGES_ANSWERS), ids=list(MESSAGES_ANSWERS))
def test_messages_events_are_the_objects_encoded(answer: str):
    """The Messages stream writes its usual events from templates: each must be what event()
    makes of the object it carries (type first, then its fields, compactly encoded)."""
    stream = anthropic.MessagesStream("deepseek-chat")
    usage = orjson.dumps({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 9,
                                                   "total_tokens": 12}})
    lines = [b"data: " + p + b"\n\n" for p in [_chunk({"role": "assistant", "content": ""}),
                                                  *ANSWERS[answer], usage]] + [sse.DONE]
    events = b"".join(e for line in lines for e in stream.feed(line)).split(b"\n\n")
    assert events.pop() == b""
    for e in events:
        name, data = e.split(b"\ndata: ")
        obj = orjson.loads(data)
        assert anthropic.event(obj.pop("type"), obj) == e + b"\n\n"
        assert name == b"event: " + orjson.loads(data)["type"].encode()
    kinds = [orjson.loads(e.split(b"\ndata: ")[1])["type"] for e in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert kinds.count("content_block_start") == kinds.count("content_block_stop")


def test_a_messages_stream_is_what_the_api_describes():
    stream = anthropic.MessagesStream("deepseek-chat")
    usage = {"prompt_tokens": 3, "completion_tokens": 9, "total_tokens": 12,
             "prompt_cache_hit_tokens": 1}
    lines = [b"data: " + p + b"\n\n" for p in [
        _chunk({"role": "assistant", "content": ""}), _chunk({"content": "Hi"}),
        _chunk({"content": ' "you"'}), _chunk({}, finish_reason="length"),
        orjson.dumps({"choices": [], "usage": usage})]] + [sse.DONE]
    out = b"".join(e for line in lines for e in stream.feed(line))
    assert out == b"".join([
        anthropic.event("message_start", {"message": {
            "id": "msg_chatcmpl-1", "type": "message", "role": "assistant", "model": "deepseek-chat",
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0}}}),
        anthropic.event("content_block_start", {"index": 0,
                                                "content_block": {"type": "text", "text": ""}}),
        anthropic.event("content_block_delta", {"index": 0,
                                                "delta": {"type": "text_delta", "text": "Hi"}}),
        anthropic.event("content_block_delta", {"index": 0, "delta": {"type": "text_delta",
                                                                      "text": ' "you"'}}),
        anthropic.event("content_block_stop", {"index": 0}),
        anthropic.event("message_delta", {"delta": {"stop_reason": "max_tokens",
                                                    "stop_sequence": None},
                                          "usage": anthropic.usage_of(usage)}),
        anthropic.event("message_stop", {})])


_TEXT = st.text(alphabet=st.sampled_from([*'ab "\\/\n\t{}[]:,<', "满", "🙂", "\u2028", "\x01"]),
                min_size=0, max_size=12) | st.sampled_from(
    ['"choices":[{"index":0,"delta":{"content":"x"}}]}', '"usage"', "}]}"])


@st.composite
def _relay_lines(draw: st.DrawFn) -> list[bytes]:
    """Chat chunks as upstreams lay them out, each as the relay passes it on: most in one
    layout for the whole stream (its id, its choice's keys), so the reader keeps it, text or
    a bare finish; others with a role, reasoning or another key beside the text, another
    choice, another id or layout, usage before or after the choices, or an error."""
    stream_id = draw(_TEXT)
    encode = draw(st.sampled_from([orjson.dumps] * 3 + [_ascii_json, _go_json]))
    layout = draw(st.sampled_from([["logprobs", "finish_reason"], ["logprobs", "finish_reason"],
                                   ["finish_reason"], ["logprobs"], []]))
    lines = []
    for _ in range(draw(st.integers(1, 10))):
        kind = draw(st.sampled_from(["text", "text", "text", "finish", "odd"]))
        delta: dict[str, Any] = {"content": draw(_TEXT)}
        choice: dict[str, Any] = {"index": 0, "delta": delta, **dict.fromkeys(layout)}
        chunk: dict[str, Any] = {"id": stream_id, "choices": [choice]}
        if kind == "finish":
            choice["delta"] = draw(st.sampled_from([{}, {"content": ""}, {"content": None}]))
            choice["finish_reason"] = draw(st.sampled_from(
                ["stop", "length", "tool_calls", "content_filter", "other"]))
        elif kind == "odd":
            if draw(st.booleans()):
                choice["delta"] = {draw(st.sampled_from(["role", "reasoning_content", "x"])): "v",
                                   **delta}
            choice["index"] = draw(st.sampled_from([0, 1]))
            for key in draw(st.lists(st.sampled_from(["logprobs", "finish_reason"]), unique=True)):
                choice[key] = draw(st.sampled_from([None, "stop"]))
            chunk["id"] = draw(_TEXT)
        usage = {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
        where = draw(st.sampled_from(["none"] * 6 + ["before", "after", "error"]))
        if where == "before":
            chunk = {"usage": usage, **chunk}
        elif where == "after":
            chunk["usage"] = usage
        elif where == "error":
            chunk = {"error": {"message": "busy"}, **chunk}
        lines.append(b"data: " + encode(chunk) + b"\n\n")
    return lines


def _ascii_json(obj: Any) -> bytes:
    """As Python's json module writes a chunk by default: every non-ASCII character escaped."""
    return json.dumps(obj, separators=(",", ":")).encode()


def _go_json(obj: Any) -> bytes:
    """As Go's encoding/json (and some relays) escape: `<` as \\u003c, `/` as \\/."""
    return orjson.dumps(obj).replace(b"<", b"\\u003c").replace(b"/", b"\\/")


_HEAD = (b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",'
         b'"choices":[{"index":0,"delta":')
_TAIL = b',"logprobs":null,"finish_reason":null}]}\n\n'
ODD_LINES = {
    "odd escapes": _HEAD + b'{"content":"\\u003c\\/b\\u6ee1"}' + _TAIL,
    "spaces around the text": _HEAD + b'{"content": "a" }' + _TAIL,
    "a carriage return after the text": _HEAD + b'{"content":"a"\r}' + _TAIL,
    "an escaped usage key": b'data: {"id":"c1","us\\u0061ge":{"prompt_tokens":5,"completion_tokens":7},'
                            b'"choices":[{"index":0,"delta":{"content":"a"}}]}\n\n',
    "an escaped error key": b'data: {"id":"c1","\\u0065rror":{"message":"boom"},'
                            b'"choices":[{"index":0,"delta":{"content":"a"}}]}\n\n',
    "invalid JSON before the choices": b'data: {"id":"c1",,,"choices":[{"index":0,"delta":'
                                       b'{"content":"a"}}]}\n\n',
    "two chunks in one line": b'data: {"choices":[{"index":0,"delta":{"content":"a"}}]}'
                              b'{"choices":[{"index":0,"delta":{"content":"b"}}]}\n\n',
}


@pytest.mark.parametrize("odd", list(ODD_LINES), ids=list(ODD_LINES))
@pytest.mark.parametrize("make", [lambda: anthropic.MessagesStream("deepseek-chat"),
                                  lambda: responses_stream.ResponsesStream("resp_1", {}, "deepseek-chat")],
                         ids=["messages", "responses"])
def test_a_chunk_no_encoder_of_ours_writes_is_read_as_the_parser_reads_it(
        make: Any, odd: str, monkeypatch: pytest.MonkeyPatch):
    """Escapes the client's parser would not write, whitespace around the text (a carriage
    return would end the event's line at the client), keys only a parser sees, invalid JSON:
    first in a stream and after a kept layout, the events are the parser's, and each is one
    line of canonical JSON."""
    start = _HEAD + b'{"role":"assistant","content":""}' + _TAIL
    usual = _HEAD + b'{"content":"x"}' + _TAIL
    for lines in ([start, ODD_LINES[odd], sse.DONE], [start, usual, ODD_LINES[odd], sse.DONE]):
        fast = _events(make, lines, True, monkeypatch)
        assert fast == _events(make, lines, False, monkeypatch)
        for event in fast.split(b"\n\n")[:-1]:
            data = event.split(b"\ndata: ")[1]
            assert b"\r" not in event and orjson.dumps(orjson.loads(data)) == data


@settings(max_examples=200, deadline=None, derandomize=True)
@given(lines=_relay_lines())
def test_a_kept_layout_reads_what_a_fresh_reader_reads(lines: list[bytes]):
    """Once the reader keeps a stream's layout it compares bytes instead of searching them:
    it must still read exactly the usual chunks, and a bare finish only where the parser
    would find that finish reason and nothing else."""
    reader = sse.ChunkReader()
    for line in lines:
        assert reader.text(line) == plain_text_line(line)
        reason = reader.finish_reason(line)
        if reason is not None:
            chunk = orjson.loads(line[6:])
            assert set(chunk) <= {"id", "object", "created", "model", "system_fingerprint",
                                  "choices"}
            (choice,) = chunk["choices"]
            assert choice["index"] == 0 and choice["finish_reason"] == reason
            assert choice["delta"] in ({}, {"content": ""})
            assert set(choice) <= {"index", "delta", "logprobs", "finish_reason"}


def test_the_reader_keeps_the_layout_and_reads_the_finish():
    reader = sse.ChunkReader()
    first, second = (b"data: " + _chunk({"content": t}) + b"\n\n" for t in ("one", "two"))
    assert reader.finish_reason(b"data: " + _chunk({}, finish_reason="stop") + b"\n\n") is None
    assert reader.text(first) == (b'"one"', "one") and reader.text(second) == (b'"two"', "two")
    for delta in ({}, {"content": ""}):
        for reason in ("stop", "length", "tool_calls", "content_filter"):
            line = b"data: " + _chunk(delta, finish_reason=reason) + b"\n\n"
            assert reader.finish_reason(line) == reason
    other = b"data: " + _chunk({}, head={"id": "chatcmpl-2", "object": "chat.completion.chunk",
                                         "created": 1, "model": "deepseek-chat"},
                               finish_reason="stop") + b"\n\n"
    assert reader.finish_reason(other) is None  # another stream's layout: parsed
    assert reader.text(b"data: " + _chunk({"content": "x"}, finish_reason="stop") + b"\n\n") is None


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


@pytest.mark.parametrize("make", [lambda: anthropic.MessagesStream("deepseek-chat"),
                                  lambda: responses_stream.ResponsesStream("resp_1", {}, "deepseek-chat")],
                         ids=["messages", "responses"])
def test_nothing_follows_the_failure(make: Any, monkeypatch: pytest.MonkeyPatch):
    """An upstream that goes on after its own error event: the client's stream has ended with
    the failure, so nothing more is written, whether the text is read short or parsed."""
    lines = [b"data: " + p + b"\n\n" for p in [
        _chunk({"role": "assistant", "content": ""}), _chunk({"content": "before"}),
        orjson.dumps({"id": "chatcmpl-1", "error": {"message": "busy"}}),
        _chunk({"content": "after"}), _chunk({}, finish_reason="stop")]] + [sse.DONE]
    for fast in (True, False):
        written = _events(make, lines, fast, monkeypatch)
        last = written.rstrip(b"\n").rsplit(b"\n\n", 1)[-1]
        assert b"after" not in written and (b'"type":"error"' in last or b"response.failed" in last)
