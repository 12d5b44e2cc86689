"""POST /v1/chat/completions, streaming and not."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from manxue.accounting.keys import KeyRecord
from manxue.errors import ManxueError
from manxue.protocol.chat import parse_chat_request
from manxue.protocol.completions import Endpoint
from manxue.protocol.sse import error_event
from manxue.protocol.types import ApiRequest, RequestContext
from manxue.server.middleware import CLIENT_REQUEST_ID, REQUEST_ID
from manxue.server.sse_writer import SSEWriter
from manxue.server.state import AppState, local_client, state_of

PRIVACY_HEADER = "X-Manxue-Privacy"
Translate = Callable[[bytes], list[bytes]]


async def chat_completions(request: web.Request) -> web.StreamResponse:
    st = state_of(request)
    key = authenticate(request, st)
    body = await request.read()
    req, raw = parse_chat_request(body)
    ctx = await admit(request, st, key, req, raw, len(body))
    # Admitted: from here every way out, an exception or the client leaving included, settles
    # the request once (a ledger row, the reservation and the concurrency slot given back).
    try:
        if not req.stream:
            answer = await st.chat.complete(req, raw, ctx)
            return web.Response(body=answer, content_type="application/json")
        return await relay_stream(request, st, req, raw, ctx)
    finally:
        if not ctx.settled or ctx.holding is not None:
            await st.chat.finish(ctx)


def authenticate(request: web.Request, st: AppState) -> KeyRecord | None:
    """The key the request carries (`Authorization: Bearer` or `x-api-key`); 401 when the
    gateway has keys and this is none of them. Checked before the body is read."""
    if st.meter is None:
        return None
    authorization = request.headers.get("Authorization")
    return st.meter.authenticate(authorization,
                                 None if authorization else request.headers.get("x-api-key"),
                                 lambda: local_client(request))


async def admit(request: web.Request, st: AppState, key: KeyRecord | None, req: ApiRequest,
                raw: dict[str, Any], body_bytes: int) -> RequestContext:
    """The request's context once its limits and cost are admitted (the 402 / 403 / 404 / 429
    a refusal calls for is raised before anything is held)."""
    headers = request.headers
    ctx = RequestContext(
        request_id=request[REQUEST_ID], model=req.model, stream=req.stream,
        client_request_id=request.get(CLIENT_REQUEST_ID),
        local_only=headers.get(PRIVACY_HEADER, "").lower() == "local"
        or (key is not None and key.privacy == "local"),
    )
    meter = st.meter
    if meter is not None:
        st.router.check(req.model, ctx.local_only)  # unknown model or policy: 4xx before admission
        ctx.ticket = await meter.admit(key, req, raw, ctx.request_id, body_bytes)
    return ctx


async def relay_stream(request: web.Request, st: AppState, req: ApiRequest,
                       raw: dict[str, Any], ctx: RequestContext,
                       translate: Translate | None = None,
                       endpoint: Endpoint = "chat") -> web.StreamResponse:
    """Relay a streamed answer; `translate` turns each piece of the chat stream into the
    pieces another API's clients expect (None: the chat stream itself)."""
    ids = {"X-Request-Id": ctx.request_id}
    if ctx.client_request_id is not None:
        ids["X-Client-Request-Id"] = ctx.client_request_id
    out = SSEWriter(request, st.settings.router.keepalive_interval, ids)
    out.arm()
    try:
        chunks = await st.chat.stream(req, raw, ctx, out.keepalive, endpoint)
    except ManxueError as exc:
        await out.stop_waiting()
        if not out.started:
            raise
        data = _translated(error_event(exc.message, exc.code or "error", exc.type), translate)
        if data:
            await out.write(data)
        return out.response
    await out.stop_waiting()
    try:
        await out.start()
        async for piece in chunks:
            data = _translated(piece, translate)
            if data:  # one write per piece relayed, however many events it became
                await out.write(data)
    except ConnectionError:
        pass  # the client left mid-stream; the relay below settles what it got
    finally:
        await chunks.aclose()
    return out.response


def _translated(piece: bytes, translate: Translate | None) -> bytes:
    return piece if translate is None else b"".join(translate(piece))
