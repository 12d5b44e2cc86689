"""OpenAI's Responses API on top of the chat path: requests, answers, stream events.

A Responses request becomes a chat body (after the history of `previous_response_id`, when
given), goes through the chat path's admission, routing and metering, and the chat answer is
turned back into a response object; the stream into Responses events.

| Responses | chat completions |
|---|---|
| `instructions` | a first `system` message (not carried to the next response, as OpenAI does) |
| `input`: text, or message items (`input_text`, `input_image`, `output_text` parts) | messages |
| `function_call` / `function_call_output` items | assistant `tool_calls` / `tool` messages |
| `tools` (function tools), `tool_choice` | `tools`, `tool_choice` |
| `max_output_tokens`, `temperature`, `top_p`, `parallel_tool_calls` | the same by chat's names |
| `text.format` `json_schema` / `json_object` | `response_format` |
| answer `reasoning_content` | a `reasoning` output item with a summary |
| usage | `input_tokens` (with `cached_tokens`), `output_tokens` (with `reasoning_tokens`) |
"""

from __future__ import annotations

import os
import time
from typing import Any

import orjson

from manxue.errors import InvalidParameters, InvalidRequest
from manxue.protocol.sse import plain_text, plain_text_json

_ROLES = ("user", "assistant", "system", "developer")


def _bad(message: str, param: str) -> InvalidParameters:
    return InvalidParameters(message, param=param)


def new_id(prefix: str) -> str:
    """An unguessable id (a stored response is fetched by its id alone where keys are off)."""
    return f"{prefix}_{os.urandom(16).hex()}"


# -- requests ---------------------------------------------------------------------------------

def _content(content: Any, role: str, at: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad(f"{at}.content must be a string or a list of content parts", f"{at}.content")
    parts: list[dict[str, Any]] = []
    for i, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        where = f"{at}.content[{i}]"
        if kind in ("input_text", "output_text", "text") and isinstance(part.get("text"), str):
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "input_image" and role == "user" and isinstance(part.get("image_url"), str):
            parts.append({"type": "image_url", "image_url": {"url": part["image_url"]}})
        elif kind == "refusal":
            continue
        else:
            raise _bad(f"{where}: supported parts are input_text, output_text and input_image "
                       f"(with image_url); got {kind!r}", where)
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def input_messages(items: Any) -> list[dict[str, Any]]:
    """Chat messages for a request's `input`."""
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    if not isinstance(items, list) or not items:
        raise _bad("input must be a string or a non-empty list of items", "input")
    out: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        at = f"input[{i}]"
        if not isinstance(item, dict):
            raise _bad(f"{at} must be an object", at)
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in _ROLES:
                raise _bad(f"{at}.role must be one of {', '.join(_ROLES)}", f"{at}.role")
            out.append({"role": "system" if role == "developer" else role,
                        "content": _content(item.get("content"), str(role), at)})
        elif kind == "function_call":
            if not isinstance(item.get("call_id"), str) or not isinstance(item.get("name"), str):
                raise _bad(f"{at}: a function_call needs a call_id and a name", at)
            call = {"id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": str(item.get("arguments") or "{}")}}
            last = out[-1] if out else None
            if last is not None and last["role"] == "assistant" and last.get("tool_calls") \
                    and not last.get("content"):
                last["tool_calls"].append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            if not isinstance(item.get("call_id"), str):
                raise _bad(f"{at}: a function_call_output needs the call_id it answers", at)
            output = item.get("output")
            out.append({"role": "tool", "tool_call_id": item["call_id"],
                        "content": output if isinstance(output, str) else orjson.dumps(output).decode()})
        elif kind == "reasoning":
            continue
        else:
            raise _bad(f"{at}: item type {kind!r} is not supported (message, function_call, "
                       "function_call_output)", f"{at}.type")
    return out


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise _bad("tools must be a list", "tools")
    out = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type") != "function" \
                or not isinstance(tool.get("name"), str):
            kind = tool.get("type") if isinstance(tool, dict) else None
            raise _bad(f"tools[{i}]: only function tools (with a name) are supported; got "
                       f"{kind!r}", f"tools[{i}]")
        function = {k: tool[k] for k in ("name", "description", "parameters", "strict") if k in tool}
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: Any) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" \
            and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise _bad('tool_choice must be "auto", "none", "required" or {"type": "function", '
               '"name": ...}', "tool_choice")


def _response_format(text: Any) -> dict[str, Any] | None:
    fmt = text.get("format") if isinstance(text, dict) else None
    if not isinstance(fmt, dict) or fmt.get("type") in (None, "text"):
        return None
    if fmt["type"] == "json_object":
        return {"type": "json_object"}
    if fmt["type"] == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        return {"type": "json_schema", "json_schema": schema}
    raise _bad("text.format.type must be text, json_object or json_schema", "text.format")


def to_chat(data: Any, history: list[dict[str, Any]]) -> dict[str, Any]:
    """A chat body for a Responses request, after `history` (the messages of the response it
    continues)."""
    if not isinstance(data, dict):
        raise InvalidRequest("request body must be a JSON object")
    for name in ("model", "input"):
        if name not in data:
            raise InvalidRequest(f"missing required field '{name}'", param=name)
    messages: list[dict[str, Any]] = []
    if data.get("instructions") is not None:
        if not isinstance(data["instructions"], str):
            raise _bad("instructions must be a string", "instructions")
        messages.append({"role": "system", "content": data["instructions"]})
    messages += history
    messages += input_messages(data["input"])
    body: dict[str, Any] = {"model": data["model"], "messages": messages}
    if data.get("max_output_tokens") is not None:
        body["max_tokens"] = data["max_output_tokens"]
    for name in ("temperature", "top_p", "parallel_tool_calls", "stream", "user", "seed"):
        if data.get(name) is not None:
            body[name] = data[name]
    if data.get("tools"):
        body["tools"] = _tools(data["tools"])
    if data.get("tool_choice") is not None:
        body["tool_choice"] = _tool_choice(data["tool_choice"])
    fmt = _response_format(data.get("text"))
    if fmt is not None:
        body["response_format"] = fmt
    if body.get("stream") is True:
        body["stream_options"] = {"include_usage": True}
    return body


# -- answers ----------------------------------------------------------------------------------

def usage_of(u: Any) -> dict[str, Any] | None:
    if not isinstance(u, dict):
        return None
    prompt, completion = int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0)
    details = u.get("prompt_tokens_details") if isinstance(u.get("prompt_tokens_details"), dict) else {}
    cached = int(u.get("prompt_cache_hit_tokens") or (details or {}).get("cached_tokens") or 0)
    cdetails = u.get("completion_tokens_details")
    reasoning = int(cdetails.get("reasoning_tokens") or 0) if isinstance(cdetails, dict) else 0
    return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": cached},
            "output_tokens": completion, "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": prompt + completion}


class Answer:
    """An answer being assembled (whole or from stream deltas): reasoning, text, tool calls."""

    def __init__(self) -> None:
        self.reasoning = ""
        self._text: list[str] = []  # pieces, joined when read: a long stream appends thousands
        self.calls: list[dict[str, str]] = []  # {"call_id", "name", "arguments"}
        self.finish = "stop"
        self.usage: dict[str, Any] | None = None

    @property
    def text(self) -> str:
        if len(self._text) > 1:
            self._text[:] = ["".join(self._text)]
        return self._text[0] if self._text else ""

    @text.setter
    def text(self, value: str) -> None:
        self._text = [value] if value else []

    def add_text(self, piece: str) -> None:
        self._text.append(piece)

    @classmethod
    def of_chat(cls, data: dict[str, Any]) -> Answer:
        a = cls()
        choice = (data.get("choices") or [{}])[0]
        message = choice.get("message") or {}
        a.reasoning = message.get("reasoning_content") or ""
        a.text = message.get("content") or ""
        for call in message.get("tool_calls") or []:
            fn = call.get("function") or {}
            a.calls.append({"call_id": call.get("id") or new_id("call"), "name": fn.get("name", ""),
                            "arguments": fn.get("arguments") or ""})
        a.finish = choice.get("finish_reason") or "stop"
        a.usage = usage_of(data.get("usage"))
        return a

    def message(self) -> dict[str, Any]:
        """The assistant message, for the history of a later response."""
        m: dict[str, Any] = {"role": "assistant", "content": self.text or None}
        if self.calls:
            m["tool_calls"] = [{"id": c["call_id"], "type": "function",
                                "function": {"name": c["name"], "arguments": c["arguments"]}}
                               for c in self.calls]
        return m

    def output(self, ids: OutputIds) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        if self.reasoning:
            items.append({"type": "reasoning", "id": ids.reasoning, "status": "completed",
                          "summary": [{"type": "summary_text", "text": self.reasoning}]})
        if self.text or not self.calls:
            items.append({"type": "message", "id": ids.message, "status": "completed",
                          "role": "assistant",
                          "content": [{"type": "output_text", "text": self.text,
                                       "annotations": [], "logprobs": []}]})
        for k, c in enumerate(self.calls):
            items.append({"type": "function_call", "id": ids.call(k), "status": "completed",
                          "call_id": c["call_id"], "name": c["name"], "arguments": c["arguments"]})
        return items


class OutputIds:
    """The ids of a response's output items, fixed once so stream events and the final object
    agree."""

    def __init__(self, response_id: str | None = None) -> None:
        # one random draw per response: the response's own (its items come with it), or a new one
        base = response_id.partition("_")[2] if response_id else os.urandom(16).hex()
        self.reasoning = f"rs_{base}"
        self.message = f"msg_{base}"
        self._base = base
        self._calls: list[str] = []

    def call(self, k: int) -> str:
        while len(self._calls) <= k:
            self._calls.append(f"fc_{self._base}_{len(self._calls)}")
        return self._calls[k]


def response_object(response_id: str, data: dict[str, Any], model: str, answer: Answer | None,
                    ids: OutputIds, created: int, status: str = "completed") -> dict[str, Any]:
    """The response object; `data` is the Responses request."""
    incomplete = answer is not None and answer.finish == "length"
    if answer is not None and status == "completed" and incomplete:
        status = "incomplete"
    return {
        "id": response_id, "object": "response", "created_at": created, "status": status,
        "model": model, "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "instructions": data.get("instructions"),
        "max_output_tokens": data.get("max_output_tokens"),
        "previous_response_id": data.get("previous_response_id"),
        "output": answer.output(ids) if answer is not None else [],
        "parallel_tool_calls": data.get("parallel_tool_calls", True),
        "temperature": data.get("temperature"), "top_p": data.get("top_p"),
        "tool_choice": data.get("tool_choice", "auto"), "tools": data.get("tools") or [],
        "text": data.get("text") or {"format": {"type": "text"}},
        "store": data.get("store", True), "metadata": data.get("metadata") or {},
        "usage": answer.usage if answer is not None else None,
    }


_EVENT_HEADS: dict[str, bytes] = {}
"""Each event kind's first bytes, up to its sequence number."""


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
        self._chat_index = -1  # its index in the chat stream's tool_calls
        self.done = False
        self.failed = False
        self._text_fields = b""  # an output_text.delta's fields of the open message, to its text

    def _event(self, kind: str, payload: dict[str, Any]) -> bytes:
        body = {"type": kind, "sequence_number": self.seq, **payload}
        self.seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(body) + b"\n\n"

    def _snapshot(self, status: str) -> dict[str, Any]:
        return response_object(self.id, self.data, self.model,
                               self.answer if status != "in_progress" else None,
                               self.ids, self.created, status)

    def final(self) -> dict[str, Any]:
        """The whole response once the stream has ended."""
        return self._snapshot("completed")

    def start(self) -> list[bytes]:
        snap = orjson.dumps(self._snapshot("in_progress"))  # one encoding for both events
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
        if not line.startswith(b"data: "):
            return []
        payload = line[6:].strip()
        if self.open == "message":
            found = plain_text_json(payload)
            if found is not None:  # the usual chunk, not even parsed
                self.answer.add_text(found[1])
                return [self._raw_event("response.output_text.delta",
                                        self._text_fields + found[0] + b',"logprobs":[]')]
        out = self.start() if self.seq == 0 else []
        if payload == b"[DONE]":
            return out + self.finish()
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return out
        if not isinstance(chunk, dict):
            return out
        if self.open == "message":
            text = plain_text(chunk)
            if text is not None:  # the usual chunk: one text delta, from a template
                self.answer.add_text(text)
                return [*out, self._raw_event("response.output_text.delta", self._text_fields
                                              + orjson.dumps(text) + b',"logprobs":[]')]
        if "error" in chunk:
            err = chunk["error"] if isinstance(chunk["error"], dict) else {}
            self.done = self.failed = True
            failed = self._snapshot("failed")
            failed["error"] = {"code": str(err.get("code") or "server_error"),
                               "message": str(err.get("message") or "the answer broke off")}
            return [*out, self._event("response.failed", {"response": failed})]
        if chunk.get("usage"):
            self.answer.usage = usage_of(chunk["usage"])
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if delta.get("reasoning_content"):
                out += self._into("reasoning")
                self.answer.reasoning += delta["reasoning_content"]
                out.append(self._event("response.reasoning_summary_text.delta", {
                    "item_id": self.ids.reasoning, "output_index": self.index,
                    "summary_index": 0, "delta": delta["reasoning_content"]}))
            if delta.get("content"):
                out += self._into("message")
                self.answer.add_text(delta["content"])
                out.append(self._event("response.output_text.delta", {
                    "item_id": self.ids.message, "output_index": self.index, "content_index": 0,
                    "delta": delta["content"], "logprobs": []}))
            for call in delta.get("tool_calls") or []:
                out += self._tool_call(call)
            if choice.get("finish_reason"):
                self.answer.finish = choice["finish_reason"]
        return out

    def finish(self) -> list[bytes]:
        if self.done:
            return []
        out = self.start() if self.seq == 0 else []
        out += self._close()
        self.done = True
        snap = self._snapshot("completed")
        kind = "response.incomplete" if snap["status"] == "incomplete" else "response.completed"
        return [*out, self._event(kind, {"response": snap})]

    # -- items ----------------------------------------------------------------------------------
    def _item(self) -> dict[str, Any]:
        """The open item as it stands (in progress)."""
        a = self.answer
        if self.open == "reasoning":
            return {"type": "reasoning", "id": self.ids.reasoning, "status": "in_progress",
                    "summary": [{"type": "summary_text", "text": a.reasoning}] if a.reasoning else []}
        if self.open == "message":
            return {"type": "message", "id": self.ids.message, "status": "in_progress",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": a.text, "annotations": [],
                                 "logprobs": []}] if a.text else []}
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
        out.append(self._event("response.output_item.added",
                               {"output_index": self.index, "item": self._item()}))
        if kind == "message":
            self._text_fields = (b'"item_id":' + orjson.dumps(self.ids.message)
                                 + b',"output_index":' + str(self.index).encode()
                                 + b',"content_index":0,"delta":')
            out.append(self._event("response.content_part.added", {
                "item_id": self.ids.message, "output_index": self.index, "content_index": 0,
                "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}}))
        if kind == "reasoning":
            out.append(self._event("response.reasoning_summary_part.added", {
                "item_id": self.ids.reasoning, "output_index": self.index, "summary_index": 0,
                "part": {"type": "summary_text", "text": ""}}))
        return out

    def _close(self) -> list[bytes]:
        if self.open is None:
            return []
        a, out = self.answer, []
        item = self._item()
        item["status"] = "completed"
        if self.open == "message":
            part = {"type": "output_text", "text": a.text, "annotations": [], "logprobs": []}
            item["content"] = [part]
            out += [self._event("response.output_text.done", {
                        "item_id": self.ids.message, "output_index": self.index,
                        "content_index": 0, "text": a.text, "logprobs": []}),
                    self._event("response.content_part.done", {
                        "item_id": self.ids.message, "output_index": self.index,
                        "content_index": 0, "part": part})]
        elif self.open == "reasoning":
            part = {"type": "summary_text", "text": a.reasoning}
            out += [self._event("response.reasoning_summary_text.done", {
                        "item_id": self.ids.reasoning, "output_index": self.index,
                        "summary_index": 0, "text": a.reasoning}),
                    self._event("response.reasoning_summary_part.done", {
                        "item_id": self.ids.reasoning, "output_index": self.index,
                        "summary_index": 0, "part": part})]
        else:
            c = a.calls[self.call_index]
            out.append(self._event("response.function_call_arguments.done", {
                "item_id": self.ids.call(self.call_index), "output_index": self.index,
                "arguments": c["arguments"], "name": c["name"]}))
        out.append(self._event("response.output_item.done",
                               {"output_index": self.index, "item": item}))
        self.open = None
        return out

    def _tool_call(self, call: dict[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        fn = call.get("function") or {}
        index = call.get("index", 0)
        calls = self.answer.calls
        if self.open != "call" or index != self._chat_index:
            calls.append({"call_id": call.get("id") or new_id("call"),
                          "name": fn.get("name", ""), "arguments": ""})
            self.call_index = len(calls) - 1
            self._chat_index = index
            out += self._into("call")
        if fn.get("arguments"):
            calls[self.call_index]["arguments"] += fn["arguments"]
            out.append(self._event("response.function_call_arguments.delta", {
                "item_id": self.ids.call(self.call_index), "output_index": self.index,
                "delta": fn["arguments"]}))
        return out
