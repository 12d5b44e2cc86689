"""OpenAI's Responses API, streamed: the chat relay's SSE lines turned into Responses events
(the request and the answer's objects are in manxue.protocol.responses)."""

from __future__ import annotations

import time
from typing import Any

import orjson

from manxue.protocol import chat_answer
from manxue.protocol.responses import (
    Answer,
    OutputIds,
    new_id,
    request_fields,
    response_head,
    response_object,
    settings_fields,
    usage_of,
)
from manxue.protocol.sse import ChunkReader

_EVENT_HEADS: dict[str, bytes] = {}
"""Each event kind's first bytes, up to its sequence number."""
_DELTA_HEAD = (b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
               b'"sequence_number":')


def _text_part(text: bytes) -> bytes:
    """An output_text content part, its text already JSON."""
    return b'{"type":"output_text","text":%s,"annotations":[],"logprobs":[]}' % text


class ResponsesStream:
    """Turns the chat relay's SSE lines into Responses stream events: response.created and
    .in_progress; per output item .output_item.added, the deltas (reasoning summary, output
    text, function call arguments), their .done events and .output_item.done; then
    response.completed (or .incomplete) carrying the whole response, or response.failed."""

    def __init__(self, response_id: str, data: dict[str, Any], model: str) -> None:
        self.id, self.data, self.model = response_id, data, model
        self.ids = OutputIds(response_id)
        self.created = int(time.time())
        self.answer = Answer()
        self.seq = 0
        self.open: str | None = None  # "reasoning" | "message" | "call"
        self.index = -1  # output index of the open item
        self.call_index = -1  # the open function call, in self.answer.calls
        self._chat_index: Any = -1  # its index in the chat stream's tool_calls
        self.done = False
        self.failed = False
        self._message_fields = b""  # the open message's item_id, output_index and content_index
        self._text_fields = b""  # an output_text.delta's fields of the open message, to its text
        self._item_id = ""  # the open message's or reasoning's id
        self._opened: dict[str, int] = {}  # messages and reasonings opened so far, for their ids
        self._texts: list[str] = []  # the open message's text
        self._add_text = self._texts.append
        self._reasoning_from = 0  # where the open reasoning's text starts in the answer's
        self._closed: list[bytes] = []  # the closed items, in order, as output_item.done has them
        self._echo: tuple[bytes, bytes] | None = None  # the request's fields of every snapshot
        self._read = ChunkReader()

    def _event(self, kind: str, payload: dict[str, Any]) -> bytes:
        body = {"type": kind, "sequence_number": self.seq, **payload}
        self.seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(body) + b"\n\n"

    def _snapshot(self, status: str) -> dict[str, Any]:
        if status == "in_progress":
            return response_object(self.id, self.data, self.model, None, self.ids, self.created,
                                   status)
        return response_object(self.id, self.data, self.model, self.answer, self.ids,
                               self.created, status, output=orjson.loads(self._output_json()))

    def _output_json(self) -> bytes:
        """The output items in the order they were streamed, each as its output_item.done had
        it (an item still open as it stands); where none was, the answer's own (an empty
        message)."""
        items = [*self._closed, orjson.dumps(self._item())] if self.open else self._closed
        if not items:
            return orjson.dumps(self.answer.output(self.ids))
        return b"[%s]" % b",".join(items)

    def _snapshot_json(self, status: str) -> bytes:
        """`orjson.dumps(self._snapshot(status))`, byte for byte: the request's fields are
        encoded once for all the stream's snapshots, and the output items are the bytes their
        output_item.done events carried."""
        if self._echo is None:
            self._echo = (orjson.dumps(request_fields(self.data))[1:-1],
                          orjson.dumps(settings_fields(self.data))[1:-1])
        a = self.answer if status != "in_progress" else None
        head = orjson.dumps(response_head(self.id, self.model, a, self.created, status))
        if a is None:
            output, usage = b"[]", b"null"
        else:
            output, usage = self._output_json(), orjson.dumps(a.usage)
        return b'%s,%s,"output":%s,%s,"usage":%s}' % (head[:-1], self._echo[0], output,
                                                       self._echo[1], usage)

    def final(self) -> dict[str, Any]:
        """The whole response once the stream has ended."""
        return self._snapshot("completed")

    def start(self) -> list[bytes]:
        snap = self._snapshot_json("in_progress")  # one encoding for both events
        return [self._raw_event("response.created", b'"response":' + snap),
                self._raw_event("response.in_progress", b'"response":' + snap)]

    def _raw_event(self, kind: str, fields: bytes) -> bytes:
        """An event whose fields after type and sequence_number are already JSON."""
        head = _EVENT_HEADS.get(kind)
        if head is None:
            name = kind.encode()
            head = _EVENT_HEADS[kind] = b'event: %s\ndata: {"type":"%s","sequence_number":' % (
                name, name)
        self.seq += 1
        return b"%s%d,%s}\n\n" % (head, self.seq - 1, fields)

    def feed(self, line: bytes) -> list[bytes]:
        if self._text_fields:  # a message is open: the usual chunk and the bare finish, unparsed
            found = self._read.text(line)
            if found is not None:
                self._add_text(found[1])
                self.seq += 1
                return [b'%s%d,%s%s,"logprobs":[]}\n\n' % (_DELTA_HEAD, self.seq - 1,
                                                            self._text_fields, found[0])]
            reason = self._read.finish_reason(line)
            if reason is not None:
                self.answer.finish = reason
                return []
        elif self.seq and self.open is None and not self.done:  # the first text, unparsed
            found = self._read.text(line)
            if found is not None:
                out = self._into("message")
                self._add_text(found[1])
                return [*out, self._raw_event("response.output_text.delta", self._text_fields
                                              + found[0] + b',"logprobs":[]')]
        if self.done or not line.startswith(b"data: "):  # nothing after the end or a failure
            return []
        payload = line[6:].strip()
        out = self.start() if self.seq == 0 else []
        if payload == b"[DONE]":
            return out + self.finish()
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return out
        if not isinstance(chunk, dict):
            return out
        if "error" in chunk:
            err = chunk["error"] if isinstance(chunk["error"], dict) else {}
            self.done = self.failed = True
            failed = self._snapshot("failed")
            self._text_fields = b""  # no delta after the failure
            failed["error"] = {"code": chat_answer.shown(err.get("code")) or "server_error",
                               "message": chat_answer.shown(err.get("message"))
                               or "the answer broke off"}
            return [*out, self._event("response.failed", {"response": failed})]
        if chunk.get("usage"):
            self.answer.usage = usage_of(chunk["usage"])
        for delta, finish in chat_answer.deltas(chunk):
            reasoning = chat_answer.text(delta.get("reasoning_content"))
            if reasoning:
                out += self._into("reasoning")
                self.answer.reasoning += reasoning
                out.append(self._event("response.reasoning_summary_text.delta", {
                    "item_id": self._item_id, "output_index": self.index,
                    "summary_index": 0, "delta": reasoning}))
            text = chat_answer.text(delta.get("content"))
            if text:
                out += self._into("message")
                self._add_text(text)
                out.append(self._raw_event("response.output_text.delta", self._text_fields
                                           + orjson.dumps(text) + b',"logprobs":[]'))
            for call in chat_answer.tool_calls(delta):
                out += self._tool_call(call)
            if finish:
                self.answer.finish = finish if isinstance(finish, str) else "stop"
        return out

    def finish(self) -> list[bytes]:
        if self.done:
            return []
        out = self.start() if self.seq == 0 else []
        out += self._close()
        self.done = True
        kind = "response.incomplete" if self.answer.finish == "length" else "response.completed"
        return [*out, self._raw_event(kind, b'"response":' + self._snapshot_json("completed"))]

    # -- items ----------------------------------------------------------------------------------
    def _item(self) -> dict[str, Any]:
        """The open item as it stands (in progress)."""
        a = self.answer
        if self.open == "reasoning":
            said = a.reasoning[self._reasoning_from:]
            return {"type": "reasoning", "id": self._item_id, "status": "in_progress",
                    "summary": [{"type": "summary_text", "text": said}] if said else []}
        if self.open == "message":
            text = "".join(self._texts)
            return {"type": "message", "id": self._item_id, "status": "in_progress",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": [],
                                 "logprobs": []}] if text else []}
        c = a.calls[self.call_index]
        return {"type": "function_call", "id": self.ids.call(self.call_index),
                "status": "in_progress", "call_id": c["call_id"], "name": c["name"],
                "arguments": c["arguments"]}

    def _into(self, kind: str) -> list[bytes]:
        if self.open == kind and kind != "call":
            return []
        out = self._close()
        self.open = kind
        self.index += 1
        if kind != "call":  # a message or reasoning after another of its kind is a new item
            k = self._opened[kind] = self._opened.get(kind, -1) + 1
            self._item_id = self.ids.item(kind, k)
        if kind == "message":
            return out + self._open_message()
        if kind == "reasoning":
            self._reasoning_from = len(self.answer.reasoning)
        out.append(self._event("response.output_item.added",
                               {"output_index": self.index, "item": self._item()}))
        if kind == "reasoning":
            out.append(self._event("response.reasoning_summary_part.added", {
                "item_id": self._item_id, "output_index": self.index, "summary_index": 0,
                "part": {"type": "summary_text", "text": ""}}))
        return out

    def _close(self) -> list[bytes]:
        if self.open is None:
            return []
        if self.open == "message":
            return self._close_message()
        a, out = self.answer, []
        item = self._item()
        item["status"] = "completed"
        if self.open == "reasoning":
            said = a.reasoning[self._reasoning_from:]
            part = {"type": "summary_text", "text": said}
            out += [self._event("response.reasoning_summary_text.done", {
                        "item_id": self._item_id, "output_index": self.index,
                        "summary_index": 0, "text": said}),
                    self._event("response.reasoning_summary_part.done", {
                        "item_id": self._item_id, "output_index": self.index,
                        "summary_index": 0, "part": part})]
        else:
            c = a.calls[self.call_index]
            out.append(self._event("response.function_call_arguments.done", {
                "item_id": self.ids.call(self.call_index), "output_index": self.index,
                "arguments": c["arguments"], "name": c["name"]}))
        out.append(self._event("response.output_item.done",
                               {"output_index": self.index, "item": item}))
        self._closed.append(orjson.dumps(item))
        self.open = None
        return out

    def _open_message(self) -> list[bytes]:
        """A message item's opening events (the bytes the item dictionaries would encode to)."""
        message_id = orjson.dumps(self._item_id)
        self._message_fields = b'"item_id":%s,"output_index":%d,"content_index":0' % (
            message_id, self.index)
        self._text_fields = self._message_fields + b',"delta":'
        self._texts.clear()
        item = b'{"type":"message","id":%s,"status":"in_progress","role":"assistant","content":[]}'
        return [self._raw_event("response.output_item.added", b'"output_index":%d,"item":%s' % (
                    self.index, item % message_id)),
                self._raw_event("response.content_part.added",
                                self._message_fields + b',"part":' + _text_part(b'""'))]

    def _close_message(self) -> list[bytes]:
        """The open message's closing events, the text encoded once for all three (the bytes
        the item dictionaries would encode to)."""
        said = "".join(self._texts)
        self.answer.add_text(said)
        text = orjson.dumps(said)
        part = _text_part(text)
        item = b'{"type":"message","id":%s,"status":"completed","role":"assistant","content":[%s]}' % (
            orjson.dumps(self._item_id), part)
        fields = self._message_fields
        self._closed.append(item)
        self.open, self._message_fields, self._text_fields = None, b"", b""
        return [self._raw_event("response.output_text.done",
                                fields + b',"text":' + text + b',"logprobs":[]'),
                self._raw_event("response.content_part.done", fields + b',"part":' + part),
                self._raw_event("response.output_item.done",
                                b'"output_index":%d,"item":%s' % (self.index, item))]

    def _tool_call(self, call: chat_answer.ToolCall) -> list[bytes]:
        out: list[bytes] = []
        calls = self.answer.calls
        if self.open != "call" or call.index != self._chat_index:
            calls.append({"call_id": call.id or new_id("call"), "name": call.name, "arguments": ""})
            self.call_index = len(calls) - 1
            self._chat_index = call.index
            out += self._into("call")
        if call.arguments:
            calls[self.call_index]["arguments"] += call.arguments
            out.append(self._event("response.function_call_arguments.delta", {
                "item_id": self.ids.call(self.call_index), "output_index": self.index,
                "delta": call.arguments}))
        return out
