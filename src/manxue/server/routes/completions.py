"""POST /v1/completions (text), /beta/completions (DeepSeek's FIM, with `suffix`) and
/v1/embeddings: admitted, routed, failed over and billed exactly as chat is."""

from __future__ import annotations

from aiohttp import web

from manxue.protocol.completions import (
    Endpoint,
    parse_completion_request,
    parse_embedding_request,
)
from manxue.protocol.types import ApiRequest
from manxue.server.routes.chat import admit, authenticate, relay_stream
from manxue.server.state import state_of

_JSON = "application/json"


async def _serve(request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
    st = state_of(request)
    key = authenticate(request, st)
    body = await request.read()
    req: ApiRequest
    if endpoint == "embeddings":
        req, raw = parse_embedding_request(body)
    else:
        req, raw = parse_completion_request(body, fim=endpoint == "fim")
    ctx = await admit(request, st, key, req, raw, len(body))
    try:  # every way out settles the request once (see routes/chat.py)
        if not req.stream:
            answer = await st.chat.complete(req, raw, ctx, endpoint)
            return web.Response(body=answer, content_type=_JSON)
        return await relay_stream(request, st, req, raw, ctx, endpoint=endpoint)
    finally:
        if not ctx.settled or ctx.holding is not None:
            await st.chat.finish(ctx)


async def completions(request: web.Request) -> web.StreamResponse:
    return await _serve(request, "completions")


async def fim_completions(request: web.Request) -> web.StreamResponse:
    return await _serve(request, "fim")


async def embeddings(request: web.Request) -> web.StreamResponse:
    return await _serve(request, "embeddings")


def add_routes(app: web.Application) -> None:
    for prefix in ("/v1", ""):
        app.router.add_post(f"{prefix}/completions", completions)
        app.router.add_post(f"{prefix}/embeddings", embeddings)
    app.router.add_post("/beta/completions", fim_completions)
