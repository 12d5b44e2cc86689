"""OpenAI's Responses API: POST /v1/responses (whole or streamed, continuing a stored answer
with `previous_response_id`), GET and DELETE /v1/responses/{id}; on the chat path
(manxue.protocol.responses). Stored answers belong to the key that made them."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from aiohttp import web

from manxue.accounting.keys import KeyRecord
from manxue.accounting.stored_responses import ResponseStore
from manxue.errors import InvalidParameters, ResponseNotFound
from manxue.protocol import responses as wire
from manxue.protocol.chat import load_object, validate_chat
from manxue.protocol.responses_stream import ResponsesStream
from manxue.server.routes.chat import admit, authenticate, relay_stream
from manxue.server.state import state_of

_JSON = "application/json"
log = logging.getLogger("manxue.server")


def _store(request: web.Request) -> ResponseStore:
    store = state_of(request).responses
    assert store is not None  # build_state always makes one
    return store


def _not_found(response_id: str) -> ResponseNotFound:
    return ResponseNotFound(f"no stored response '{response_id}' for this key (unknown, expired, "
                            "made with store: false, or another key's)", param="id")


async def _history(store: ResponseStore, key: KeyRecord | None, data: dict[str, Any]
                   ) -> list[dict[str, Any]]:
    previous = data.get("previous_response_id")
    if previous is None:
        return []
    if not isinstance(previous, str):
        raise InvalidParameters("previous_response_id must be a string", param="previous_response_id")
    stored = await asyncio.to_thread(store.get, previous, key.id if key else None)
    if stored is None:
        raise _not_found(previous)
    return list(stored["messages"])


async def create(request: web.Request) -> web.StreamResponse:
    st = state_of(request)
    key = authenticate(request, st)
    body = await request.read()
    data = load_object(body, "model and input")
    store = _store(request)
    history = await _history(store, key, data)
    chat_body = raw = wire.to_chat(data, history)
    req = validate_chat(raw)
    # the prompt is the stored history too, not only this body: reserve for all of it
    size = len(body) + (len(orjson.dumps(history)) if history else 0)
    ctx = await admit(request, st, key, req, raw, size)
    response_id = wire.new_id("resp")
    keep = data.get("store", True) is not False
    # the history a later response continues: this one's messages without its instructions
    said = chat_body["messages"][1:] if data.get("instructions") is not None else chat_body["messages"]

    async def save(obj: dict[str, Any], answer: wire.Answer) -> None:
        """Keep the answer for later; it is delivered and billed whether or not this works."""
        if not keep:
            return
        try:
            await asyncio.to_thread(store.put, response_id, key.id if key else None, req.model,
                                    {"messages": [*said, answer.message()], "response": obj})
        except Exception:
            log.exception("response %s could not be stored; previous_response_id will not "
                          "find it", response_id)

    try:
        if not req.stream:
            answer = wire.Answer.of_chat(orjson.loads(await st.chat.complete(req, raw, ctx)))
            obj = wire.response_object(response_id, data, req.model, answer, wire.OutputIds(response_id),
                                       int(time.time()))
            await save(obj, answer)
            return web.Response(body=orjson.dumps(obj), content_type=_JSON)
        events = ResponsesStream(response_id, data, req.model)
        out = await relay_stream(request, st, req, raw, ctx, events.feed)
        if keep and events.done and not events.failed:
            await save(events.final(), events.answer)
        return out
    finally:
        if not ctx.settled or ctx.holding is not None:
            await st.chat.finish(ctx)


async def retrieve(request: web.Request) -> web.Response:
    st = state_of(request)
    key = authenticate(request, st)
    response_id = request.match_info["id"]
    stored = await asyncio.to_thread(_store(request).get, response_id, key.id if key else None)
    if stored is None:
        raise _not_found(response_id)
    return web.Response(body=orjson.dumps(stored["response"]), content_type=_JSON)


async def remove(request: web.Request) -> web.Response:
    st = state_of(request)
    key = authenticate(request, st)
    response_id = request.match_info["id"]
    if not await asyncio.to_thread(_store(request).delete, response_id, key.id if key else None):
        raise _not_found(response_id)
    return web.Response(body=orjson.dumps({"id": response_id, "object": "response",
                                           "deleted": True}), content_type=_JSON)


def add_routes(app: web.Application) -> None:
    for prefix in ("/v1", ""):
        app.router.add_post(f"{prefix}/responses", create)
        app.router.add_get(f"{prefix}/responses/{{id}}", retrieve)
        app.router.add_delete(f"{prefix}/responses/{{id}}", remove)
