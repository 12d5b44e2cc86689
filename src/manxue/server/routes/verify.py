"""Endpoint audits as jobs (the same audit as `manxue verify`).

    POST /v1/verify                  {"model": ..., "base_url"?, "api_key"?, "claim"?,
                                      "reference_url"?, "reference_model"?, "reference_api_key"?,
                                      "budget_requests"?, "seed"?, "checks"?, "alpha"?}
                                     → 202 {"id", "status"}
    GET  /v1/verify/{id}             → progress per check, and the result once done
    GET  /v1/verify/{id}/report.html → the HTML report (a self-refreshing page while running)

Without base_url the audit targets this gateway itself; without api_key it then uses the
caller's own key. reference_model without reference_url also means this gateway. These
targets are built here, from the socket the request came in on, so they are always allowed.
When that reference model is served here from a local engine (and the caller's key may use
it), its weights score the audited answers in process: the likelihood check, which needs no
logprobs from the audited endpoint.

What an audit may reach (manxue.verify.netguard). A base_url or reference_url the caller gives
must be http(s), carry no user:password@, and its host must resolve to public addresses only:
a host that is or resolves to a loopback, private (RFC 1918, fc00::/7), link-local, CGNAT,
multicast, unspecified or reserved address (or an IPv6 form of one, e.g. ::ffff:127.0.0.1;
however spelled: 2130706433, 0x7f.1, localhost, trailing dots) is refused with 403
`verify_target_forbidden` before anything connects; 422 `verify_target_unresolvable` when the
name does not resolve. The operator allows their own internal endpoints with
`[verify] allow_hosts` (host names, addresses, CIDR ranges). The same check runs again inside
the resolver of every connection the audit makes, which connects only to the addresses it
checked (no DNS rebinding after the first check). Redirects are not followed, and results
keep only parsed, bounded evidence of what came back (never a raw body).

Jobs belong to the tenant of the key that started them (the key itself when it has no
tenant; without keys, to everyone): GET on someone else's job answers 404 as for an unknown
id. At most `[verify] max_running_per_tenant` jobs run per tenant and `[verify] max_running`
in all; past either, 429 with Retry-After. Jobs live in this process's memory (at most 32;
the oldest finished one is dropped first).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from manxue.errors import ConfigError, InvalidParameters, InvalidRequest, JobNotFound
from manxue.server.state import STATE_KEY, local_client, state_of
from manxue.settings import VerifySettings
from manxue.verify.checks.base import CheckOptions
from manxue.verify.config import DEFAULT_BUDGET, AuditConfig, parse_checks
from manxue.verify.jobs import Job, JobStore
from manxue.verify.netguard import Policy, TargetForbidden, preflight
from manxue.verify.report_html import render, render_pending
from manxue.verify.scorer import EngineScorer, Scorer

JOBS_KEY = web.AppKey("manxue_verify_jobs", JobStore)
POLICY_KEY = web.AppKey("manxue_verify_policy", Policy)
_STR = ("base_url", "model", "api_key", "claim", "reference_url", "reference_model",
        "reference_api_key")
_KNOWN = {*_STR, "budget_requests", "seed", "checks", "alpha"}
MAX_BUDGET = 200
"""Most requests one audit started through the API may send to its target."""
_RESOLVE_SECONDS = 10.0


def add_routes(app: web.Application) -> None:
    """Mount the routes (calling it twice is harmless). The limits and the allow-list come
    from the settings of the app's state (build_app sets it before calling this)."""
    if JOBS_KEY in app:
        return
    settings = app[STATE_KEY].settings.verify if STATE_KEY in app else VerifySettings()
    app[JOBS_KEY] = JobStore(running_limit=settings.max_running,
                             per_owner_limit=settings.max_running_per_tenant)
    try:
        app[POLICY_KEY] = Policy.from_hosts(settings.allow_hosts)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    app.router.add_post("/v1/verify", start_job)
    app.router.add_get("/v1/verify/{id}", get_job)
    app.router.add_get("/v1/verify/{id}/report.html", get_report)
    app.on_cleanup.append(_close)


async def _close(app: web.Application) -> None:
    await app[JOBS_KEY].close()


def _owner(request: web.Request) -> str | None:
    """Authenticate the caller; its jobs' owner: the key's tenant, else the key (None when
    metering is off or no key exists yet)."""
    meter = state_of(request).meter
    if meter is None:
        return None
    rec = meter.authenticate(request.headers.get("Authorization"),
                             request.headers.get("x-api-key"), lambda: local_client(request))
    if rec is None:
        return None
    return rec.tenant_id or rec.id


def _local_weights(request: web.Request, body: dict[str, Any]) -> Scorer | None:
    """The reference's weights, when the reference is a model this gateway serves from a local
    engine (`reference_model` without `reference_url`) that the caller's key may use: the
    likelihood check then scores the audited answers with that engine, in process."""
    name = body.get("reference_model")
    if not isinstance(name, str) or body.get("reference_url"):
        return None
    st = state_of(request)
    if st.meter is not None:
        key = st.meter.authenticate(request.headers.get("Authorization"),
                                    request.headers.get("x-api-key"), lambda: local_client(request))
        if not st.meter.allowed_models(key, [name]):
            return None
    for dep in st.router.deployments:
        engine = getattr(dep.provider, "engine", None)
        if dep.settings.model == name and dep.settings.is_local and engine is not None:
            return EngineScorer(engine, f"{engine.model.path.name} (model {name!r} on this gateway)")
    return None


def _own_url(request: web.Request) -> str | None:
    """This gateway's URL, from the socket the request came in on (never from headers)."""
    sock = request.transport.get_extra_info("sockname") if request.transport else None
    if not isinstance(sock, tuple) or len(sock) < 2:
        return None
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


def _validate(body: dict[str, Any]) -> None:
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
    if not isinstance(budget, int) or isinstance(budget, bool) or not 1 <= budget <= MAX_BUDGET:
        # an audit started by a customer is a bounded number of requests, never an open tap
        raise InvalidParameters(f"'budget_requests' must be an integer from 1 to {MAX_BUDGET}",
                                param="budget_requests")
    checks = body.get("checks")
    if checks is not None and not (isinstance(checks, list) and all(isinstance(c, str) for c in checks)):
        raise InvalidParameters("'checks' must be a list of check names", param="checks")
    alpha = body.get("alpha", CheckOptions.alpha)
    if isinstance(alpha, bool) or not isinstance(alpha, int | float):
        raise InvalidParameters("'alpha' must be a number", param="alpha")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise InvalidParameters("'seed' must be an integer", param="seed")


def _self(own_url: str | None, param: str) -> str:
    if own_url is None:
        raise InvalidParameters(f"this gateway cannot tell its own address for this request; "
                                f"give {param}", param=param)
    return own_url


def config_from(body: dict[str, Any], own_url: str | None, caller_key: str | None, *,
                guard: Policy | None = None, scorer: Scorer | None = None) -> AuditConfig:
    """The audit a POST /v1/verify body asks for. Targets the caller names are subject to
    `guard`; those built here (this gateway, `own_url`) are not."""
    _validate(body)
    own: set[str] = set()
    if not body.get("base_url"):
        own.add("suspect")
    self_reference = bool(body.get("reference_model")) and not body.get("reference_url")
    if self_reference:
        own.add("reference")
    base = body.get("base_url") or _self(own_url, "base_url")
    extra: dict[str, Any] = {}
    if body.get("seed") is not None:
        extra["seed"] = body["seed"]
    return AuditConfig(
        base_url=base, model=body["model"],
        api_key=body.get("api_key") or (caller_key if "suspect" in own else None),
        claim=body.get("claim"),
        reference_url=body.get("reference_url")
        or (_self(own_url, "reference_url") if self_reference else None),
        reference_model=body.get("reference_model"),
        reference_api_key=body.get("reference_api_key") or (caller_key if self_reference else None),
        budget_requests=body.get("budget_requests", DEFAULT_BUDGET),
        checks=parse_checks(body.get("checks")),
        options=CheckOptions(alpha=float(body.get("alpha", CheckOptions.alpha))),
        guard=guard, own_targets=frozenset(own), scorer=scorer, **extra)


async def check_targets(cfg: AuditConfig) -> None:
    """Refuse, before anything connects, a target the network policy forbids (403) or whose
    host does not resolve (422)."""
    if cfg.guard is None:
        return
    for param, url in cfg.guarded_targets():
        try:
            await asyncio.wait_for(preflight(url, cfg.guard), _RESOLVE_SECONDS)
        except TargetForbidden as exc:
            raise TargetForbidden(f"{param}: {exc.message}", param=param) from None
        except OSError as exc:  # socket.gaierror, TimeoutError
            raise InvalidParameters(f"{param}: the host of {url!r} does not resolve "
                                    f"({type(exc).__name__}: {exc}); check the URL",
                                    code="verify_target_unresolvable", param=param) from None


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(obj), content_type="application/json",
                        headers=headers)


async def start_job(request: web.Request) -> web.Response:
    owner = _owner(request)
    raw = await request.read()
    try:
        body = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError:
        raise InvalidRequest("body is not valid JSON", code="invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidRequest("body must be a JSON object")
    cfg = config_from(body, _own_url(request), _caller_key(request),
                      guard=request.app[POLICY_KEY], scorer=_local_weights(request, body))
    store = request.app[JOBS_KEY]
    store.admit(owner)
    await check_targets(cfg)
    job = store.start(cfg, owner)
    return _json({"id": job.id, "object": "verify.job", "status": job.status,
                  "url": f"/v1/verify/{job.id}"}, status=202,
                 headers={"Location": f"/v1/verify/{job.id}"})


def _job(request: web.Request) -> Job:
    """The caller's job named in the path; someone else's answers 404 as an unknown one."""
    owner = _owner(request)
    job = request.app[JOBS_KEY].get(request.match_info["id"], owner)
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
