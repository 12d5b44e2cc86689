"""OpenAI's Responses API on top of the chat path: requests and answers.

A Responses request becomes a chat body (after the history of `previous_response_id`, when
given), goes through the chat path's admission, routing and metering, and the chat answer is
turned back into a response object; a stream into Responses events (responses_stream.py).

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
from typing import Any

import orjson

from manxue.errors import InvalidParameters, InvalidRequest
from manxue.protocol import chat_answer
from manxue.protocol.usage import counts_of

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
    """The Responses usage for a chat usage object, read as the ledger reads it."""
    counts = counts_of(u)
    if counts is None:
        return None
    prompt, completion, hit, _, reasoning = counts
    return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": hit},
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
        choice, message = chat_answer.whole(data)
        a.reasoning = chat_answer.text(message.get("reasoning_content"))
        a.text = chat_answer.text(message.get("content"))
        for call in chat_answer.tool_calls(message):
            a.calls.append({"call_id": call.id or new_id("call"), "name": call.name,
                            "arguments": call.arguments})
        finish = choice.get("finish_reason")
        a.finish = finish if isinstance(finish, str) and finish else "stop"
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

    def item(self, kind: str, k: int) -> str:
        """The id of the k-th message or reasoning item (0: the response's own)."""
        first = self.message if kind == "message" else self.reasoning
        return first if k == 0 else f"{first}_{k}"

    def call(self, k: int) -> str:
        while len(self._calls) <= k:
            self._calls.append(f"fc_{self._base}_{len(self._calls)}")
        return self._calls[k]


def response_object(response_id: str, data: dict[str, Any], model: str, answer: Answer | None,
                    ids: OutputIds, created: int, status: str = "completed",
                    output: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The response object; `data` is the Responses request, `output` the items as a stream
    gave them (default: the answer's)."""
    if output is None:
        output = answer.output(ids) if answer is not None else []
    return {**response_head(response_id, model, answer, created, status),
            **request_fields(data), "output": output,
            **settings_fields(data), "usage": answer.usage if answer is not None else None}


def response_head(response_id: str, model: str, answer: Answer | None, created: int,
                  status: str = "completed") -> dict[str, Any]:
    """The response object's first fields, up to its request fields."""
    incomplete = answer is not None and answer.finish == "length"
    if answer is not None and status == "completed" and incomplete:
        status = "incomplete"
    return {"id": response_id, "object": "response", "created_at": created, "status": status,
            "model": model, "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None}


def request_fields(data: dict[str, Any]) -> dict[str, Any]:
    """The response object's fields that echo the request, before its output."""
    return {"instructions": data.get("instructions"),
            "max_output_tokens": data.get("max_output_tokens"),
            "previous_response_id": data.get("previous_response_id")}


def settings_fields(data: dict[str, Any]) -> dict[str, Any]:
    """The request's settings the response object carries after its output."""
    return {"parallel_tool_calls": data.get("parallel_tool_calls", True),
            "temperature": data.get("temperature"), "top_p": data.get("top_p"),
            "tool_choice": data.get("tool_choice", "auto"), "tools": data.get("tools") or [],
            "text": data.get("text") or {"format": {"type": "text"}},
            "store": data.get("store", True), "metadata": data.get("metadata") or {}}
