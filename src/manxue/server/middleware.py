"""The one place where exceptions become OpenAI error JSON, and where requests are counted."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from manxue.errors import BodyTooLarge, InvalidRequest, ManxueError, ModelNotFound
from manxue.server.state import state_of

log = logging.getLogger("manxue.server")

REQUEST_ID = web.RequestKey("request_id", str)
_ID_PREFIX = f"{int(time.time()):x}{os.getpid():x}-"
_ids = itertools.count(1)

_JSON = "application/json"


def error_response(exc: ManxueError, request_id: str | None = None) -> web.Response:
    headers = exc.headers()
    if request_id:
        headers["X-Request-Id"] = request_id
    return web.Response(status=exc.status, body=exc.to_json(), content_type=_JSON,
                        headers=headers)


def _from_http(exc: web.HTTPException, request: web.Request) -> ManxueError:
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        limit = state_of(request).settings.server.max_body_bytes
        hint = f" (limit {limit} bytes)"
        return BodyTooLarge(f"request body is too large{hint}; send a smaller request")
    if isinstance(exc, web.HTTPNotFound):
        return ModelNotFound(f"no route for {request.method} {request.path}; the API lives "
                             "under /v1 (see /v1/models)", code="not_found")
    err = InvalidRequest(f"{exc.reason} for {request.method} {request.path}",
                         code=exc.reason.lower().replace(" ", "_"))
    err.status = exc.status
    return err


@web.middleware
async def errors_and_metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
    t0 = time.perf_counter()
    rid = request.headers.get("X-Request-Id") or f"{_ID_PREFIX}{next(_ids):x}"
    request[REQUEST_ID] = rid
    status = 500
    try:
        try:
            resp = await handler(request)
        except ManxueError as exc:
            resp = error_response(exc, rid)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            resp = error_response(_from_http(exc, request), rid)
        except asyncio.CancelledError:
            status = 499  # the client went away
            raise
        except Exception:
            log.exception("unexpected error in %s %s (request %s)", request.method,
                          request.path, rid)
            resp = error_response(ManxueError(
                f"internal error; the gateway logged it as request {rid}"), rid)
        status = resp.status
        if not resp.prepared:
            resp.headers["X-Request-Id"] = rid
        return resp
    finally:
        m = state_of(request).metrics
        route = request.match_info.route.resource
        name = route.canonical if route is not None else "unmatched"
        m.child(m.requests, name, str(status)).inc()
        m.child(m.latency, name).observe(time.perf_counter() - t0)
