"""POST /v1/chat/completions, streaming and not."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from manxue.errors import ManxueError
from manxue.protocol.chat import ChatRequest, parse_chat_request
from manxue.protocol.sse import error_event
from manxue.protocol.types import RequestContext
from manxue.server.middleware import CLIENT_REQUEST_ID, REQUEST_ID
from manxue.server.sse_writer import SSEWriter
from manxue.server.state import AppState, client_of, state_of

PRIVACY_HEADER = "X-Manxue-Privacy"


async def chat_completions(request: web.Request) -> web.StreamResponse:
    st = state_of(request)
    headers = request.headers
    key = None
    if st.meter is not None:
        authorization = headers.get("Authorization")
        key = st.meter.authenticate(authorization,
                                    None if authorization else headers.get("x-api-key"),
                                    lambda: client_of(request))
    body = await request.read()
    req, raw = parse_chat_request(body)
    ctx = RequestContext(
        request_id=request[REQUEST_ID], model=req.model, stream=req.stream,
        client_request_id=request.get(CLIENT_REQUEST_ID),
        local_only=request.headers.get(PRIVACY_HEADER, "").lower() == "local"
        or (key is not None and key.privacy == "local"),
    )
    meter = st.meter
    if meter is not None:
        st.router.check(req.model, ctx.local_only)  # unknown model or policy: 4xx before admission
        ctx.ticket = meter.admit_now(key, req, raw, ctx.request_id, len(body)) \
            or await meter.admit(key, req, raw, ctx.request_id, len(body))
    # Admitted: from here every way out, an exception or the client leaving included, settles
    # the request once (a ledger row, the reservation and the concurrency slot given back).
    try:
        if not req.stream:
            answer = await st.chat.complete(req, raw, ctx)
            return web.Response(body=answer, content_type="application/json")
        return await _stream(request, st, req, raw, ctx)
    finally:
        if not ctx.settled or ctx.holding is not None:
            await st.chat.finish(ctx)


async def _stream(request: web.Request, st: AppState, req: ChatRequest, raw: dict[str, Any],
                  ctx: RequestContext) -> web.StreamResponse:
    ids = {"X-Request-Id": ctx.request_id}
    if ctx.client_request_id is not None:
        ids["X-Client-Request-Id"] = ctx.client_request_id
    out = SSEWriter(request, st.settings.router.keepalive_interval, ids)
    out.arm()
    try:
        chunks = await st.chat.stream(req, raw, ctx, out.keepalive)
    except ManxueError as exc:
        await out.stop_waiting()
        if not out.started:
            raise
        await out.write(error_event(exc.message, exc.code or "error", exc.type))
        return out.response
    await out.stop_waiting()
    try:
        await out.start()
        async for piece in chunks:
            await out.write(piece)
    except ConnectionError:
        pass  # the client left mid-stream; the relay below settles what it got
    finally:
        await chunks.aclose()
    return out.response
