"""Anthropic's Messages API on top of the chat path: requests, answers, stream events, errors.

A Messages request is translated into a chat-completion body, which then goes through the same
validation, admission, routing, failover and metering as any chat request; the chat answer (or
its stream) is translated back. So every deployment, local or upstream, serves Messages, and
the same answer bills the same amount whichever API asked for it.

| Messages | chat completions |
|---|---|
| `system` (text or text blocks) | a first `system` message |
| `text` / `image` blocks | text / `image_url` parts (text alone: a plain string) |
| assistant `tool_use` blocks | `tool_calls` (`input` as JSON `arguments`) |
| user `tool_result` blocks | `tool` messages (before the user's own text) |
| `thinking` blocks in the history | dropped (as Anthropic does for earlier turns) |
| `tools`, `tool_choice` auto / any / tool / none | `tools`, `auto` / `required` / named / `none` |
| `stop_sequences`, `metadata.user_id` | `stop`, `user` |
| answer `reasoning_content` | a `thinking` block |
| usage | `input_tokens` = prompt − cache hits, `cache_read_input_tokens` = cache hits |

`top_k` and `thinking` settings have no chat equivalent and are ignored; `stop_reason` is
`end_turn` when a stop sequence ended the answer (the chat answer does not say which one).
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from manxue.errors import InvalidParameters, InvalidRequest, ManxueError, UpstreamError
from manxue.protocol import chat_answer
from manxue.protocol.sse import ChunkReader
from manxue.protocol.usage import counts_of

ANTHROPIC_PREFIX = "/anthropic"
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                "function_call": "tool_use", "content_filter": "refusal"}
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
                403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                422: "invalid_request_error", 429: "rate_limit_error", 503: "overloaded_error",
                529: "overloaded_error"}
_TOOL_CHOICES = {"auto": "auto", "any": "required", "none": "none"}


def is_anthropic_path(path: str) -> bool:
    """Requests whose errors are written in Anthropic's shape."""
    return path.startswith(ANTHROPIC_PREFIX + "/") or path.startswith("/v1/messages")


# -- requests ---------------------------------------------------------------------------------

def _bad(message: str, param: str) -> InvalidParameters:
    return InvalidParameters(message, param=param)


def _text_of(blocks: Any, where: str) -> str:
    """The text of a string or a list of text blocks."""
    if isinstance(blocks, str):
        return blocks
    if not isinstance(blocks, list):
        raise _bad(f"{where} must be a string or a list of text blocks", where)
    parts = []
    for i, block in enumerate(blocks):
        if not isinstance(block, dict) or block.get("type") != "text" \
                or not isinstance(block.get("text"), str):
            raise _bad(f"{where}[{i}] must be a text block ({{\"type\": \"text\", \"text\": ...}})",
                       f"{where}[{i}]")
        parts.append(block["text"])
    return "\n".join(parts)


def _image_part(block: dict[str, Any], where: str) -> dict[str, Any]:
    source = block.get("source")
    if isinstance(source, dict) and source.get("type") == "base64":
        url = f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}"
    elif isinstance(source, dict) and source.get("type") == "url" and isinstance(source.get("url"), str):
        url = source["url"]
    else:
        raise _bad(f"{where}.source must be a base64 or url image source", f"{where}.source")
    return {"type": "image_url", "image_url": {"url": url}}


def _user_messages(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    if not isinstance(content, list):
        raise _bad(f"{where}.content must be a string or a list of content blocks", f"{where}.content")
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for i, block in enumerate(content):
        at = f"{where}.content[{i}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text" and isinstance(block.get("text"), str):
            parts.append({"type": "text", "text": block["text"]})
        elif kind == "image":
            parts.append(_image_part(block, at))
        elif kind == "tool_result":
            assert isinstance(block, dict)
            if not isinstance(block.get("tool_use_id"), str):
                raise _bad(f"{at}.tool_use_id must be a string", f"{at}.tool_use_id")
            text = _text_of(block.get("content", ""), f"{at}.content") \
                if not isinstance(block.get("content"), list) else _tool_result_text(block["content"], at)
            if block.get("is_error"):
                text = f"Error: {text}"
            out.append({"role": "tool", "tool_call_id": block["tool_use_id"], "content": text})
        else:
            raise _bad(f"{at}: a user message takes text, image and tool_result blocks "
                       f"(got {kind!r})", at)
    if parts:
        only_text = all(p["type"] == "text" for p in parts)
        out.append({"role": "user",
                    "content": "\n".join(p["text"] for p in parts) if only_text else parts})
    return out


def _tool_result_text(blocks: list[Any], at: str) -> str:
    texts = [b["text"] for b in blocks
             if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)]
    if len(texts) != len(blocks):
        raise _bad(f"{at}.content: only text blocks are supported in a tool result", f"{at}.content")
    return "\n".join(texts)


def _assistant_message(content: Any, where: str) -> dict[str, Any]:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    if not isinstance(content, list):
        raise _bad(f"{where}.content must be a string or a list of content blocks", f"{where}.content")
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for i, block in enumerate(content):
        at = f"{where}.content[{i}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "tool_use":
            assert isinstance(block, dict)
            if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                raise _bad(f"{at}: a tool_use block needs a string id and name", at)
            calls.append({"id": block["id"], "type": "function",
                          "function": {"name": block["name"],
                                       "arguments": orjson.dumps(block.get("input") or {}).decode()}})
        elif kind in ("thinking", "redacted_thinking"):
            continue
        else:
            raise _bad(f"{at}: an assistant message takes text, tool_use and thinking blocks "
                       f"(got {kind!r})", at)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        message["tool_calls"] = calls
    return message


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise _bad("tools must be a list", "tools")
    out = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise _bad(f"tools[{i}] needs a name", f"tools[{i}]")
        if tool.get("type") not in (None, "custom"):
            raise _bad(f"tools[{i}]: server tools ({tool['type']!r}) are not supported; "
                       "give client tools with name, description and input_schema", f"tools[{i}]")
        function: dict[str, Any] = {"name": tool["name"],
                                    "parameters": tool.get("input_schema") or {"type": "object"}}
        if isinstance(tool.get("description"), str):
            function["description"] = tool["description"]
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: Any) -> tuple[Any, bool | None]:
    """The chat tool_choice, and parallel_tool_calls when the choice disables it."""
    if not isinstance(choice, dict) or not isinstance(choice.get("type"), str):
        raise _bad('tool_choice must be an object such as {"type": "auto"}', "tool_choice")
    kind = choice["type"]
    parallel = False if choice.get("disable_parallel_tool_use") else None
    if kind in _TOOL_CHOICES:
        return _TOOL_CHOICES[kind], parallel
    if kind == "tool" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}, parallel
    raise _bad("tool_choice.type must be auto, any, tool (with a name) or none", "tool_choice")


def to_chat(data: Any) -> dict[str, Any]:
    """A chat-completion body for a Messages request (validated here as far as Messages
    differs from chat; the chat validation then checks the rest)."""
    if not isinstance(data, dict):
        raise InvalidRequest("request body must be a JSON object")
    for name in ("model", "max_tokens", "messages"):
        if name not in data:
            raise InvalidRequest(f"{name}: Field required", param=name, code="missing_field")
    if not isinstance(data["max_tokens"], int) or isinstance(data["max_tokens"], bool) \
            or data["max_tokens"] < 1:
        raise _bad("max_tokens must be a positive integer", "max_tokens")
    messages = data["messages"]
    if not isinstance(messages, list) or not messages:
        raise _bad("messages must be a non-empty list", "messages")
    out: list[dict[str, Any]] = []
    if data.get("system") is not None:
        out.append({"role": "system", "content": _text_of(data["system"], "system")})
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        role = message.get("role") if isinstance(message, dict) else None
        if role == "user":
            out.extend(_user_messages(message.get("content"), where))
        elif role == "assistant":
            out.append(_assistant_message(message.get("content"), where))
        else:
            raise _bad(f"{where}.role must be user or assistant (system goes in `system`)",
                       f"{where}.role")
    body: dict[str, Any] = {"model": data["model"], "messages": out,
                            "max_tokens": data["max_tokens"]}
    for name in ("temperature", "top_p", "stream"):
        if data.get(name) is not None:
            body[name] = data[name]
    if data.get("stop_sequences") is not None:
        body["stop"] = data["stop_sequences"]
    if data.get("tools"):
        body["tools"] = _tools(data["tools"])
    if data.get("tool_choice") is not None:
        body["tool_choice"], parallel = _tool_choice(data["tool_choice"])
        if parallel is not None:
            body["parallel_tool_calls"] = parallel
    metadata = data.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        body["user"] = metadata["user_id"]
    if body.get("stream") is True:
        body["stream_options"] = {"include_usage": True}
    return body


# -- answers ----------------------------------------------------------------------------------

def usage_of(chat_usage: Any) -> dict[str, int]:
    """Anthropic's usage for a chat usage object, read as the ledger reads it."""
    prompt, completion, hit, _, _ = counts_of(chat_usage) or (0, 0, 0, 0, 0)
    return {"input_tokens": max(0, prompt - hit), "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": hit, "output_tokens": completion}


def _message_id(chat_id: Any) -> str:
    return f"msg_{chat_id}" if isinstance(chat_id, str) and chat_id else f"msg_{uuid.uuid4().hex}"


def _arguments(text: Any) -> Any:
    if isinstance(text, dict):
        return text
    try:
        value = orjson.loads(text or "{}")
        orjson.dumps(value)  # it is sent on: nested no deeper than the encoder takes
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        return {"_raw_arguments": text}
    return value if isinstance(value, dict) else {"value": value}


def from_chat(data: dict[str, Any], model: str) -> dict[str, Any]:
    """A Messages answer for a chat completion."""
    choice, message = chat_answer.whole(data)
    content: list[dict[str, Any]] = []
    reasoning = chat_answer.text(message.get("reasoning_content"))
    if reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    said = chat_answer.text(message.get("content"))
    if said:
        content.append({"type": "text", "text": said})
    for call in chat_answer.tool_calls(message):
        content.append({"type": "tool_use", "id": call.id or f"toolu_{uuid.uuid4().hex}",
                        "name": call.name, "input": _arguments(call.arguments)})
    return {"id": _message_id(data.get("id")), "type": "message", "role": "assistant",
            "model": model, "content": content,
            "stop_reason": _stop_reason(choice.get("finish_reason") or "stop"),
            "stop_sequence": None, "usage": usage_of(data.get("usage"))}


def _stop_reason(finish: Any) -> str:
    return STOP_REASONS.get(finish, "end_turn") if isinstance(finish, str) else "end_turn"


def event(kind: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **payload}) + b"\n\n"


# the events every answer has, as event() would encode them, to be filled in
_MESSAGE_START = (b'event: message_start\ndata: {"type":"message_start","message":{"id":%s,'
                  b'"type":"message","role":"assistant","model":%s,"content":[],"stop_reason":null,'
                  b'"stop_sequence":null,"usage":{"input_tokens":0,"output_tokens":0}}}\n\n')
_TEXT_START = (b'event: content_block_start\ndata: {"type":"content_block_start","index":%d,'
               b'"content_block":{"type":"text","text":""}}\n\n')
_TEXT_DELTA = (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,'
               b'"delta":{"type":"text_delta","text":')
_BLOCK_STOP = b'event: content_block_stop\ndata: {"type":"content_block_stop","index":%d}\n\n'
_MESSAGE_END = (b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":%s,'
                b'"stop_sequence":null},"usage":%s}\n\n'
                b'event: message_stop\ndata: {"type":"message_stop"}\n\n')


class MessagesStream:
    """Turns the chat relay's SSE lines into Messages stream events, in order:
    message_start, then per block content_block_start / _delta / _stop (thinking, text,
    tool_use), message_delta (stop reason and usage), message_stop."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.started = False
        self.block = -1
        self.open: str | None = None  # "thinking" | "text" | "tool_use"
        self.tool_index: Any = None  # the chat tool call (its index) the open tool_use block is
        self.stop_reason = "end_turn"
        self.usage: dict[str, int] = usage_of(None)
        self.finished = False
        self._text_head = b""  # a text delta event of the open block, up to its text
        self._read = ChunkReader()

    def feed(self, line: bytes) -> list[bytes]:
        """One piece of the chat relay (`data: {...}\\n\\n`, `data: [DONE]` or an error)."""
        if self._text_head:  # a text block is open: the usual chunk and the bare finish, unparsed
            found = self._read.text(line)
            if found is not None:
                return [self._text_head + found[0] + b"}}\n\n"]
            reason = self._read.finish_reason(line)
            if reason is not None:
                self.stop_reason = _stop_reason(reason)
                return []
        elif self.started and self.open is None and not self.finished:  # the first text
            found = self._read.text(line)
            if found is not None:
                return [*self._into("text"), self._text_head + found[0] + b"}}\n\n"]
        if self.finished or not line.startswith(b"data: "):  # nothing after the end or an error
            return []
        payload = line[6:].strip()
        if payload == b"[DONE]":
            return self.finish()
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return []
        if not isinstance(chunk, dict):
            return []
        if "error" in chunk:
            err = chunk["error"] if isinstance(chunk["error"], dict) else {}
            self.finished, self._text_head = True, b""  # no delta after the error
            return [event("error", {"error": {"type": "api_error", "message": chat_answer.shown(
                err.get("message")) or "stream failed"}})]
        out = self._start(chunk)
        if chunk.get("usage"):
            self.usage = usage_of(chunk["usage"])
        for delta, finish in chat_answer.deltas(chunk):
            reasoning = chat_answer.text(delta.get("reasoning_content"))
            if reasoning:
                out += self._into("thinking", {"type": "thinking", "thinking": "", "signature": ""})
                out.append(self._delta({"type": "thinking_delta", "thinking": reasoning}))
            text = chat_answer.text(delta.get("content"))
            if text:  # a text delta, from the open block's template
                out += self._into("text")
                out.append(self._text_head + orjson.dumps(text) + b"}}\n\n")
            for call in chat_answer.tool_calls(delta):
                out += self._tool_call(call)
            if finish:
                self.stop_reason = _stop_reason(finish)
        return out

    def finish(self) -> list[bytes]:
        if self.finished:
            return []
        out = self._start({})
        out += self._close()
        self.finished = True
        out.append(_MESSAGE_END % (orjson.dumps(self.stop_reason), orjson.dumps(self.usage)))
        return out

    # -- blocks ---------------------------------------------------------------------------------
    def _start(self, chunk: dict[str, Any]) -> list[bytes]:
        if self.started:
            return []
        self.started = True
        return [_MESSAGE_START % (orjson.dumps(_message_id(chunk.get("id"))),
                                 orjson.dumps(self.model))]

    def _close(self) -> list[bytes]:
        if self.open is None:
            return []
        self.open, self.tool_index, self._text_head = None, None, b""
        return [_BLOCK_STOP % self.block]

    def _into(self, kind: str, block: dict[str, Any] | None = None) -> list[bytes]:
        """Open a block of this kind unless one is open (a tool_use block: always); `block` is
        its content_block (a text block's is known)."""
        if self.open == kind and kind != "tool_use":
            return []
        out = self._close()
        self.block += 1
        self.open = kind
        if kind == "text":
            self._text_head = _TEXT_DELTA % self.block
            out.append(_TEXT_START % self.block)
        else:
            out.append(event("content_block_start", {"index": self.block, "content_block": block}))
        return out

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return event("content_block_delta", {"index": self.block, "delta": delta})

    def _tool_call(self, call: chat_answer.ToolCall) -> list[bytes]:
        out: list[bytes] = []
        if self.open != "tool_use" or self.tool_index != call.index:
            out += self._into("tool_use", {"type": "tool_use",
                                           "id": call.id or f"toolu_{uuid.uuid4().hex}",
                                           "name": call.name, "input": {}})
            self.tool_index = call.index
        if call.arguments:
            out.append(self._delta({"type": "input_json_delta", "partial_json": call.arguments}))
        return out


# -- errors -----------------------------------------------------------------------------------

def error_body(exc: ManxueError) -> bytes:
    """Anthropic's error object for any error of the product."""
    kind = _ERROR_TYPES.get(exc.status, "api_error")
    if isinstance(exc, UpstreamError) and exc.status >= 500:
        kind = "api_error" if exc.status != 503 else "overloaded_error"
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": exc.message}})
