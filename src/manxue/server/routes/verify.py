"""Endpoint audits as jobs (the same audit as `manxue verify`).

    POST /v1/verify                  {"model": ..., "base_url"?, "api_key"?, "claim"?,
                                      "reference_url"?, "reference_model"?, "reference_api_key"?,
                                      "budget_requests"?, "seed"?, "checks"?, "alpha"?}
                                     → 202 {"id", "status"}
    GET  /v1/verify/{id}             → progress per check, and the result once done
    GET  /v1/verify/{id}/report.html → the HTML report (a self-refreshing page while running)

Without base_url the audit targets this gateway itself; without api_key it then uses the
caller's own key. reference_model without reference_url also means this gateway. Jobs live in
this process's memory (at most 32; the oldest finished one is dropped first).
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from manxue.errors import InvalidParameters, InvalidRequest, ManxueError
from manxue.server.state import state_of
from manxue.verify.checks.base import CheckOptions
from manxue.verify.config import DEFAULT_BUDGET, AuditConfig, parse_checks
from manxue.verify.jobs import Job, JobStore
from manxue.verify.report_html import render, render_pending

JOBS_KEY = web.AppKey("manxue_verify_jobs", JobStore)
_STR = ("base_url", "model", "api_key", "claim", "reference_url", "reference_model",
        "reference_api_key")
_KNOWN = {*_STR, "budget_requests", "seed", "checks", "alpha"}


class JobNotFound(ManxueError):
    status = 404
    type = "invalid_request_error"
    code = "verify_job_not_found"


def add_routes(app: web.Application) -> None:
    """Mount the routes (calling it twice is harmless)."""
    if JOBS_KEY in app:
        return
    app[JOBS_KEY] = JobStore()
    app.router.add_post("/v1/verify", start_job)
    app.router.add_get("/v1/verify/{id}", get_job)
    app.router.add_get("/v1/verify/{id}/report.html", get_report)
    app.on_cleanup.append(_close)


async def _close(app: web.Application) -> None:
    await app[JOBS_KEY].close()


def _authenticate(request: web.Request) -> None:
    meter = state_of(request).meter
    if meter is not None:
        meter.authenticate(request.headers.get("Authorization"), request.headers.get("x-api-key"),
                           request.remote)


def _own_url(request: web.Request) -> str:
    sock = request.transport.get_extra_info("sockname") if request.transport else None
    if not sock:
        return f"{request.scheme}://{request.host}"
    host, port = str(sock[0]), int(sock[1])
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _caller_key(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("x-api-key") or None


def config_from(body: dict[str, Any], own_url: str, caller_key: str | None) -> AuditConfig:
    unknown = sorted(set(body) - _KNOWN)
    if unknown:
        raise InvalidParameters(f"unknown field(s) {', '.join(unknown)}; known: "
                                f"{', '.join(sorted(_KNOWN))}", param=unknown[0])
    for name in _STR:
        if body.get(name) is not None and not isinstance(body[name], str):
            raise InvalidParameters(f"'{name}' must be a string", param=name)
    if not body.get("model"):
        raise InvalidParameters("'model' is required: the model name to audit", param="model")
    budget = body.get("budget_requests", DEFAULT_BUDGET)
    if budget is not None and (not isinstance(budget, int) or isinstance(budget, bool)):
        raise InvalidParameters("'budget_requests' must be an integer", param="budget_requests")
    checks = body.get("checks")
    if checks is not None and not (isinstance(checks, list) and all(isinstance(c, str) for c in checks)):
        raise InvalidParameters("'checks' must be a list of check names", param="checks")
    alpha = body.get("alpha", CheckOptions.alpha)
    if isinstance(alpha, bool) or not isinstance(alpha, int | float):
        raise InvalidParameters("'alpha' must be a number", param="alpha")
    base = body.get("base_url") or own_url
    extra: dict[str, Any] = {}
    seed = body.get("seed")
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InvalidParameters("'seed' must be an integer", param="seed")
        extra["seed"] = seed
    return AuditConfig(
        base_url=base, model=body["model"],
        api_key=body.get("api_key") or (caller_key if base == own_url else None),
        claim=body.get("claim"),
        reference_url=body.get("reference_url") or (own_url if body.get("reference_model") else None),
        reference_model=body.get("reference_model"),
        reference_api_key=body.get("reference_api_key")
        or (caller_key if body.get("reference_model") and not body.get("reference_url") else None),
        budget_requests=budget, checks=parse_checks(checks),
        options=CheckOptions(alpha=float(alpha)), **extra)


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(obj), content_type="application/json",
                        headers=headers)


async def start_job(request: web.Request) -> web.Response:
    _authenticate(request)
    raw = await request.read()
    try:
        body = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError:
        raise InvalidRequest("body is not valid JSON", code="invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidRequest("body must be a JSON object")
    cfg = config_from(body, _own_url(request), _caller_key(request))
    job = request.app[JOBS_KEY].start(cfg)
    return _json({"id": job.id, "object": "verify.job", "status": job.status,
                  "url": f"/v1/verify/{job.id}"}, status=202,
                 headers={"Location": f"/v1/verify/{job.id}"})


def _job(request: web.Request) -> Job:
    _authenticate(request)
    job = request.app[JOBS_KEY].get(request.match_info["id"])
    if job is None:
        raise JobNotFound(f"no verify job {request.match_info['id']!r} here (jobs are kept in "
                          "memory, the oldest are dropped)", param="id")
    return job


async def get_job(request: web.Request) -> web.Response:
    return _json(_job(request).to_dict())


async def get_report(request: web.Request) -> web.Response:
    job = _job(request)
    if job.result is None:
        status = 500 if job.status == "failed" else 202
        page = render_pending(job.id, job.progress.to_list(), job.error)
        return web.Response(status=status, text=page, content_type="text/html")
    return web.Response(text=render(job.result), content_type="text/html")
