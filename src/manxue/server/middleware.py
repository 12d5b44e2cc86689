"""The one place where exceptions become OpenAI error JSON, and where requests are counted."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from manxue.errors import BodyTooLarge, InvalidRequest, ManxueError, RouteNotFound
from manxue.protocol import anthropic
from manxue.server.state import state_of

log = logging.getLogger("manxue.server")

REQUEST_ID = web.RequestKey("request_id", str)
CLIENT_REQUEST_ID = web.RequestKey("client_request_id", str)
_CLIENT_ID_MAX = 200
_ID_PREFIX = f"{int(time.time()):x}{os.getpid():x}-"
_ids = itertools.count(1)

_JSON = "application/json"


def error_response(exc: ManxueError, request_id: str | None = None,
                   path: str = "") -> web.Response:
    """The error as JSON: OpenAI's shape, or Anthropic's on the Messages routes."""
    headers = exc.headers()
    if request_id:
        headers["X-Request-Id"] = request_id
    body = anthropic.error_body(exc) if anthropic.is_anthropic_path(path) else exc.to_json()
    return web.Response(status=exc.status, body=body, content_type=_JSON, headers=headers)


def _from_http(exc: web.HTTPException, request: web.Request) -> ManxueError:
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        limit = state_of(request).settings.server.max_body_bytes
        hint = f" (limit {limit} bytes)"
        return BodyTooLarge(f"request body is too large{hint}; send a smaller request")
    if isinstance(exc, web.HTTPNotFound):
        return RouteNotFound(f"no route for {request.method} {request.path}; the API's routes: "
                             + ", ".join(api_routes(request.app)))
    err = InvalidRequest(f"{exc.reason} for {request.method} {request.path}",
                         code=exc.reason.lower().replace(" ", "_"))
    err.status = exc.status
    return err


def api_routes(app: web.Application) -> list[str]:
    """`METHOD /path` of every public API route (not the admin API, pages or assets)."""
    seen: list[str] = []
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if route.method in ("HEAD", "OPTIONS") or not path.startswith(("/v1/", "/anthropic/",
                                                                         "/user/", "/beta/")):
            continue
        entry = f"{route.method} {path}"
        if entry not in seen:
            seen.append(entry)
    return seen


def client_request_id(request: web.Request) -> str | None:
    """The id the client gave its request (`X-Client-Request-Id`, or `X-Request-Id` as older
    clients send it): echoed back and kept in the ledger, never used as manxue's own id."""
    headers = request.headers
    cid = headers.get("X-Client-Request-Id") or headers.get("X-Request-Id")
    if cid is None:
        return None
    if len(cid) > _CLIENT_ID_MAX or not cid.isascii() or not cid.isprintable():
        raise InvalidRequest(f"X-Client-Request-Id must be at most {_CLIENT_ID_MAX} printable ASCII "
                             "characters", code="invalid_client_request_id")
    return cid


@web.middleware
async def errors_and_metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
    t0 = time.perf_counter()
    rid = f"{_ID_PREFIX}{next(_ids):x}"  # unique: the ledger's key for this request
    request[REQUEST_ID] = rid
    status = 500
    cid: str | None = None
    try:
        try:
            cid = client_request_id(request)
            if cid is not None:
                request[CLIENT_REQUEST_ID] = cid
            resp = await handler(request)
        except ManxueError as exc:
            resp = error_response(exc, rid, request.path)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            resp = error_response(_from_http(exc, request), rid, request.path)
        except asyncio.CancelledError:
            status = 499  # the client went away
            raise
        except Exception:
            log.exception("unexpected error in %s %s (request %s, client's id %s)", request.method,
                          request.path, rid, cid)
            resp = error_response(ManxueError(
                f"internal error; the gateway logged it as request {rid}"), rid, request.path)
        status = resp.status
        if not resp.prepared:
            resp.headers["X-Request-Id"] = rid
            if cid is not None:
                resp.headers["X-Client-Request-Id"] = cid
        return resp
    finally:
        m = state_of(request).metrics
        route = request.match_info.route.resource
        name = route.canonical if route is not None else "unmatched"
        m.child(m.requests, name, str(status)).inc()
        m.child(m.latency, name).observe(time.perf_counter() - t0)
