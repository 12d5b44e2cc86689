"""Anthropic's Messages API: POST /v1/messages and /v1/messages/count_tokens, also under the
/anthropic base URL (as DeepSeek serves it), on the chat path (manxue.protocol.anthropic)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from manxue.accounting import tokencount
from manxue.accounting.keys import KeyRecord
from manxue.errors import BodyTooLarge, PermissionDenied, RateLimited
from manxue.protocol import anthropic
from manxue.protocol.chat import load_object, validate_chat
from manxue.server.routes.chat import admit, authenticate, relay_stream
from manxue.server.state import AppState, state_of

_JSON = "application/json"


def _json_body(body: bytes) -> dict[str, Any]:
    return load_object(body, "model, max_tokens and messages")


async def messages(request: web.Request) -> web.StreamResponse:
    st = state_of(request)
    key = authenticate(request, st)
    body = await request.read()
    data = _json_body(body)
    raw = anthropic.to_chat(data)
    req = validate_chat(raw)
    ctx = await admit(request, st, key, req, raw, len(body))
    try:
        if not req.stream:
            answer = await st.chat.complete(req, raw, ctx)
            out = anthropic.from_chat(orjson.loads(answer), req.model)
            return web.Response(body=orjson.dumps(out), content_type=_JSON)
        return await relay_stream(request, st, req, raw, ctx,
                                  anthropic.MessagesStream(req.model).feed)
    finally:
        if not ctx.settled or ctx.holding is not None:
            await st.chat.finish(ctx)


COUNT_MAX_BYTES = 1 << 20
"""The largest body count_tokens counts: about 250,000 tokens of prose, past the context of any
model this gateway serves. Counting it takes about half a second of CPU, and nothing is billed
for it, so counts also run one at a time per worker and one at a time per key: a key cannot
take more than one core from serving."""


async def count_tokens(request: web.Request) -> web.Response:
    """The prompt's input tokens: exact from the engine's tokenizer and chat template where the
    model is served by a local engine, else counted offline with the model family's tokenizer
    (within a few tokens of the upstream's count: tokencount's template estimate)."""
    st = state_of(request)
    key = authenticate(request, st)
    if (request.content_length or 0) > COUNT_MAX_BYTES:
        raise _too_large()
    if key is not None:  # before the body is read or parsed: a second count costs nothing
        if key.id in st.counting_keys:
            raise RateLimited("count_tokens counts one prompt at a time per key; retry when the "
                              "last count has answered", retry_after=1.0)
        st.counting_keys.add(key.id)
    # A count that has started cannot be stopped (it runs in a thread): it keeps its turn and
    # its key's mark until it ends, even if the client leaves, so leaving and asking again
    # does not count more at once.
    task = asyncio.ensure_future(_counted(request, st, key))
    st.counting_tasks.add(task)

    def ended(t: asyncio.Task[int]) -> None:
        st.counting_tasks.discard(t)
        if not t.cancelled():
            t.exception()  # seen here if the client has left (it is raised to a client still there)
    task.add_done_callback(ended)
    count = await asyncio.shield(task)
    return web.Response(body=orjson.dumps({"input_tokens": count}), content_type=_JSON)


async def _counted(request: web.Request, st: AppState, key: KeyRecord | None) -> int:
    """Read, check and count one prompt, its key marked until the end."""
    try:
        body = await request.read()
        if len(body) > COUNT_MAX_BYTES:
            raise _too_large()
        async with st.counting:  # parsing and counting a long prompt: off the loop, one at a time
            model, messages = await asyncio.to_thread(_prompt, body)
            st.router.check(model, False)  # unknown model: 404
            if st.meter is not None and not st.meter.allowed_models(key, [model]):
                raise PermissionDenied(f"this API key may not use model '{model}'",
                                       code="model_not_allowed")
            return await asyncio.to_thread(_count, st, model, messages)
    finally:
        if key is not None:
            st.counting_keys.discard(key.id)


def _prompt(body: bytes) -> tuple[str, list[Any]]:
    """The model and chat messages of a count_tokens body (its max_tokens is not needed)."""
    data = _json_body(body)
    chat_body = anthropic.to_chat({**data, "max_tokens": data.get("max_tokens", 1)})
    return validate_chat(chat_body).model, chat_body["messages"]


def _too_large() -> BodyTooLarge:
    return BodyTooLarge(f"count_tokens counts prompts of up to {COUNT_MAX_BYTES:,} bytes (about "
                        "250,000 tokens, past any model's context here); send a shorter prompt")


def _count(st: AppState, model: str, messages: list[Any]) -> int:
    for dep in st.router.deployments:
        engine = getattr(dep.provider, "engine", None)
        if dep.settings.model == model and dep.settings.is_local and engine is not None:
            return len(engine.tokenize_prompt(engine.render(messages)))
    return tokencount.count_prompt(messages, tokencount.family_for_model(model))


def add_routes(app: web.Application) -> None:
    for prefix in ("/v1", anthropic.ANTHROPIC_PREFIX + "/v1"):
        app.router.add_post(f"{prefix}/messages", messages)
        app.router.add_post(f"{prefix}/messages/count_tokens", count_tokens)
