"""Chat-completion request model: validated once, unknown fields kept and forwarded; the
answer's text read back from its body or stream events."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from manxue.errors import InvalidParameters, InvalidRequest

# Typed fields take only their JSON type ("max_tokens": "100" is refused, as OpenAI does), so
# what is billed is exactly what the upstream receives.
_WIRE = ConfigDict(extra="allow", strict=True)
MAX_DEPTH = 64  # nesting of objects and arrays in a request body


class Message(BaseModel):
    model_config = _WIRE

    role: Literal["system", "user", "assistant", "tool", "developer", "function"]
    content: str | list[Any] | None = None
    reasoning_content: str | None = None
    name: str | None = None


class StreamOptions(BaseModel):
    model_config = _WIRE

    include_usage: bool = False


class ChatRequest(BaseModel):
    """The fields manxue reads; everything else rides along untouched in `raw`."""

    model_config = _WIRE

    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    n: int | None = Field(None, ge=1, le=128)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    stop: str | list[str] | None = None
    seed: int | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    user: str | None = None

    @property
    def wants_usage_chunk(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    @property
    def choices(self) -> int:
        """How many answers the request asks for: each is billed, so each is reserved."""
        return self.n or 1


_FORMAT_ERRORS = {"missing", "too_short", "model_attributes_type", "dict_type"}


def parse_chat_request(body: bytes) -> tuple[ChatRequest, dict[str, Any]]:
    """Parse and validate a request body; return the model and the raw dict to forward."""
    raw = load_object(body, "model and messages")
    return validate_chat(raw), raw


def validate_chat(raw: dict[str, Any]) -> ChatRequest:
    """A chat body already parsed (or built from another API's request), validated."""
    try:
        return ChatRequest.model_validate(raw)
    except ValidationError as exc:
        raise to_client_error(exc) from None


def load_object(body: bytes, needs: str) -> dict[str, Any]:
    """A request body's JSON object (400 when empty, not JSON, not an object, too deep);
    `needs` names the required fields for the empty-body message."""
    if not body.strip():
        raise InvalidRequest(f"request body is empty; send a JSON object with {needs}")
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(raw, dict):
        raise InvalidRequest("request body must be a JSON object")
    if body.count(b"{") + body.count(b"[") > MAX_DEPTH:  # else it cannot nest that deep
        check_depth(raw)
    return raw


def check_depth(value: Any, limit: int = MAX_DEPTH) -> None:
    """Refuse objects and arrays nested deeper than `limit` (no upstream needs more, and
    encoders give up a little past 250)."""
    level: list[Any] = [value]
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            raise InvalidRequest(f"request body is nested more than {limit} levels deep",
                                 code="nesting_too_deep")
        deeper: list[Any] = []
        for item in level:
            if isinstance(item, dict):
                deeper.extend(v for v in item.values() if isinstance(v, dict | list))
            elif isinstance(item, list):
                deeper.extend(v for v in item if isinstance(v, dict | list))
        level = deeper


def to_client_error(exc: ValidationError) -> InvalidRequest | InvalidParameters:
    err = exc.errors()[0]
    loc = ".".join(str(x) for x in err["loc"])
    if err["type"] == "missing":
        return InvalidRequest(f"missing required field '{loc}'", param=loc)
    if err["type"] == "too_short" and loc == "messages":
        return InvalidRequest("'messages' must contain at least one message", param=loc)
    message = f"invalid value for '{loc}': {err['msg']}"
    if err["type"] in _FORMAT_ERRORS:
        return InvalidRequest(message, param=loc)
    return InvalidParameters(message, param=loc)


def answer_text(body: dict[str, Any] | None, payloads: Iterable[bytes] | None) -> tuple[str, str]:
    """An answer's content and reasoning text, from its whole body or its stream's events, for
    counting when usage is missing (an upstream's odd shapes count as no text, never as an
    error)."""
    content: list[str] = []
    reasoning: list[str] = []
    if body is not None:
        for choice in _choices(body):
            _collect(choice.get("message"), content, reasoning)
            _collect_text(choice, content)
    for payload in payloads or ():
        try:
            obj = orjson.loads(payload)
        except orjson.JSONDecodeError:
            continue
        for choice in _choices(obj):
            _collect(choice.get("delta"), content, reasoning)
            _collect_text(choice, content)
    return "".join(content), "".join(reasoning)


def _choices(obj: Any) -> list[dict[str, Any]]:
    choices = obj.get("choices") if isinstance(obj, dict) else None
    return [c for c in choices if isinstance(c, dict)] if isinstance(choices, list) else []


def _collect(msg: Any, content: list[str], reasoning: list[str]) -> None:
    if isinstance(msg, dict):
        for key, into in (("content", content), ("reasoning_content", reasoning)):
            text = msg.get(key)
            if isinstance(text, str):
                into.append(text)


def _collect_text(choice: dict[str, Any], content: list[str]) -> None:
    """A text completion's choice (legacy completions, FIM) carries its text directly."""
    text = choice.get("text")
    if isinstance(text, str):
        content.append(text)
