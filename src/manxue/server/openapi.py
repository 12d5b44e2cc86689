"""GET /openapi.json: the public API as OpenAPI 3.1 (the operator's /admin API is not in it).

Request bodies of chat, text completions and embeddings are the very pydantic models the
routes validate with; the Messages and Responses bodies are described by hand, as far as the
gateway reads them (unknown fields are accepted and forwarded, as for chat). Every operation
lists the error statuses it can answer, each an OpenAI-style error object (Anthropic's shape on
the Messages routes). The test suite runs Schemathesis against this document.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from pydantic import BaseModel

from manxue.protocol.chat import ChatRequest
from manxue.protocol.completions import CompletionRequest, EmbeddingRequest

_ERRORS = {"400": "malformed body", "401": "no or unknown API key",
           "402": "the key's balance cannot cover the request's largest cost",
           "403": "the key may not do this (model, privacy, price list)",
           "404": "no such model or object", "413": "body too large",
           "422": "a field has a wrong type or value", "429": "a limit of the key, or a busy engine",
           "502": "the upstream answered nonsense", "503": "no deployment can answer now",
           "504": "the upstream did not answer in time"}
_OBJECT = {"type": "object", "additionalProperties": True}
_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["message", "type"], "additionalProperties": True,
    "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                   "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}}}
_ANTHROPIC_ERROR = {"type": "object", "required": ["type", "error"], "properties": {
    "type": {"const": "error"}, "error": {"type": "object", "required": ["type", "message"],
                                          "properties": {"type": {"type": "string"},
                                                         "message": {"type": "string"}}}}}
_TEXT_BLOCKS = {"anyOf": [{"type": "string"}, {"type": "array", "items": _OBJECT}]}
_MESSAGES_REQUEST = {
    "type": "object", "additionalProperties": True, "required": ["model", "max_tokens", "messages"],
    "properties": {
        "model": {"type": "string", "minLength": 1},
        "max_tokens": {"type": "integer", "minimum": 1},
        "system": _TEXT_BLOCKS,
        "messages": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["role", "content"],
            "properties": {"role": {"enum": ["user", "assistant"]}, "content": _TEXT_BLOCKS}}},
        "stream": {"type": "boolean"}, "stop_sequences": {"type": "array",
                                                          "items": {"type": "string"}},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1},
        "tools": {"type": "array", "items": _OBJECT}, "tool_choice": _OBJECT,
        "metadata": _OBJECT}}
_COUNT_REQUEST = {**_MESSAGES_REQUEST, "required": ["model", "messages"]}
_RESPONSES_REQUEST = {
    "type": "object", "additionalProperties": True, "required": ["model", "input"],
    "properties": {
        "model": {"type": "string", "minLength": 1},
        "input": {"anyOf": [{"type": "string"}, {"type": "array", "minItems": 1, "items": _OBJECT}]},
        "instructions": {"type": "string"}, "previous_response_id": {"type": "string"},
        "store": {"type": "boolean"}, "stream": {"type": "boolean"},
        "max_output_tokens": {"type": "integer", "minimum": 1},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1},
        "tools": {"type": "array", "items": _OBJECT}, "text": _OBJECT}}
_STREAMED = {"text/event-stream": {"schema": {  # each server-sent event
    "type": "object", "properties": {"data": {"type": "string"}, "event": {"type": "string"}}}}}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    """A pydantic model's JSON Schema with its $defs inlined under components."""
    return model.model_json_schema(ref_template="#/components/schemas/{model}")


def _operation(summary: str, *, body: dict[str, Any] | None = None, ok: dict[str, Any],
               errors: tuple[str, ...], anthropic: bool = False,
               parameters: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    error_schema = _ANTHROPIC_ERROR if anthropic else _ERROR
    op: dict[str, Any] = {"summary": summary, "responses": {"200": {"description": "OK", "content": ok}}}
    for status in errors:
        op["responses"][status] = {"description": _ERRORS[status], "content": _json(error_schema)}
    if body is not None:
        op["requestBody"] = {"required": True, "content": _json(body)}
    if parameters:
        op["parameters"] = parameters
    return op


def _path_param(name: str) -> list[dict[str, Any]]:
    return [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}]


_PLAN_QUERY = ("model", "hardware", "gpus", "precision", "context", "gpu_hour", "price_list", "at",
               "efficiency", "utilisation", "overhead", "kv_dtype", "kv_bytes_per_token",
               "batch", "input_per_output", "hit_rate")
_GENERATE = ("400", "401", "402", "403", "404", "413", "422", "429", "502", "503", "504")
_READ = ("401", "404")


def _version() -> str:
    try:
        return version("manxue")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


@cache
def document() -> dict[str, Any]:
    defs: dict[str, Any] = {}
    bodies = {}
    for model in (ChatRequest, CompletionRequest, EmbeddingRequest):
        schema = _schema(model)
        defs.update(schema.pop("$defs", {}))
        defs[model.__name__] = schema
        bodies[model.__name__] = {"$ref": f"#/components/schemas/{model.__name__}"}
    answer = {**_json(_OBJECT), **_STREAMED}
    paths: dict[str, Any] = {
        "/v1/chat/completions": {"post": _operation(
            "Chat completion (OpenAI / DeepSeek), whole or streamed",
            body=bodies["ChatRequest"], ok=answer, errors=_GENERATE)},
        "/v1/completions": {"post": _operation(
            "Text completion (echo, logprobs; suffix for fill-in-the-middle)",
            body=bodies["CompletionRequest"], ok=answer, errors=_GENERATE)},
        "/beta/completions": {"post": _operation(
            "DeepSeek's fill-in-the-middle completion (prompt and suffix)",
            body={"allOf": [bodies["CompletionRequest"], {
                "required": ["suffix"], "properties": {"suffix": {"type": "string"}}}]},
            ok=answer, errors=_GENERATE)},
        "/v1/embeddings": {"post": _operation(
            "Embeddings of a text or a list of texts", body=bodies["EmbeddingRequest"],
            ok=_json(_OBJECT), errors=_GENERATE)},
        "/v1/messages": {"post": _operation(
            "Anthropic Messages, whole or streamed (also under /anthropic)",
            body=_MESSAGES_REQUEST, ok=answer, errors=_GENERATE, anthropic=True)},
        "/v1/messages/count_tokens": {"post": _operation(
            "Input tokens of a Messages request", body=_COUNT_REQUEST,
            ok=_json({"type": "object", "required": ["input_tokens"],
                      "properties": {"input_tokens": {"type": "integer", "minimum": 0}}}),
            errors=("400", "401", "403", "404", "413", "422"), anthropic=True)},
        "/v1/responses": {"post": _operation(
            "OpenAI Responses, whole or streamed; previous_response_id continues a stored one",
            body=_RESPONSES_REQUEST, ok=answer, errors=_GENERATE)},
        "/v1/responses/{id}": {
            "get": _operation("A stored response of this key", ok=_json(_OBJECT), errors=_READ,
                              parameters=_path_param("id")),
            "delete": _operation("Delete a stored response of this key", ok=_json(_OBJECT),
                                 errors=_READ, parameters=_path_param("id"))},
        "/v1/models": {"get": _operation("The models this gateway serves", ok=_json({
            "type": "object", "required": ["data"],
            "properties": {"data": {"type": "array", "items": _OBJECT}}}), errors=("401",))},
        "/v1/models/{model}": {"get": _operation("One model", ok=_json(_OBJECT), errors=_READ,
                                                 parameters=_path_param("model"))},
        "/user/balance": {"get": _operation("The calling key's balance, in DeepSeek's shape",
                                            ok=_json({"type": "object", "required": [
                                                "is_available", "balance_infos"]}),
                                            errors=("401",))},
        "/v1/usage/{request_id}": {"get": _operation(
            "Tokens and cost of one finished request of this key", ok=_json(_OBJECT),
            errors=_READ, parameters=_path_param("request_id"))},
        "/v1/verify": {"post": _operation(
            "Start an audit of an endpoint's claimed model (202 with the job)",
            body=_OBJECT, ok=_json(_OBJECT), errors=("400", "401", "403", "404", "422", "429"))},
        "/v1/verify/{id}": {"get": _operation("An audit job and its result", ok=_json(_OBJECT),
                                              errors=_READ, parameters=_path_param("id"))},
        "/v1/plan": {"get": _operation(
            "What a model needs on given hardware, what a token costs, the margin a price "
            "list yields", ok=_json(_OBJECT), errors=("401", "404", "422"),
            parameters=[{"name": n, "in": "query", "required": n in ("model", "hardware"),
                         "schema": {"type": "string"}} for n in _PLAN_QUERY])},
        "/health": {"get": _operation("The process is up", ok=_json(_OBJECT), errors=())},
        "/ready": {"get": _operation("Ready to serve (503 with the reason when not)",
                                     ok=_json(_OBJECT), errors=("503",))},
    }
    paths["/ready"]["get"]["responses"]["503"]["content"] = _json(_OBJECT)  # {"status": ...}
    paths["/v1/verify"]["post"]["responses"]["202"] = paths["/v1/verify"]["post"]["responses"].pop("200")
    for path, item in paths.items():
        for op in item.values():
            op["operationId"] = (next(iter(item)) if len(item) > 1 else "") + path
    return {"openapi": "3.1.0",
            "info": {"title": "manxue", "version": _version(),
                     "description": "OpenAI-, DeepSeek- and Anthropic-compatible gateway: chat, "
                                    "completions, embeddings, Messages, Responses, balance."},
            "paths": paths,
            "components": {"schemas": defs, "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "x-api-key": {"type": "apiKey", "in": "header", "name": "x-api-key"}}},
            "security": [{"bearer": []}, {"x-api-key": []}]}
