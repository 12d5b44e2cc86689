"""Admin API: deployments added and removed while the gateway serves.

    GET    /admin/deployments               list them
    POST   /admin/deployments[?replace=true] add one (body: a [[deployments]] entry as JSON)
    DELETE /admin/deployments/{name}        remove one

Every call needs `Authorization: Bearer <MANXUE_ADMIN_KEY>`; with MANXUE_ADMIN_KEY unset the
admin API is off and answers 403.
"""

from __future__ import annotations

import hmac
import os

import orjson
from aiohttp import web
from pydantic import ValidationError

from manxue.errors import (
    AuthenticationFailed,
    ConfigError,
    DeploymentNotFound,
    InvalidParameters,
    InvalidRequest,
    PermissionDenied,
)
from manxue.gateway import dynamic
from manxue.gateway.deployment import Deployment
from manxue.providers import registry
from manxue.server.routes import ops
from manxue.server.state import AppState, state_of
from manxue.settings import DeploymentSettings

ADMIN_KEY_ENV = "MANXUE_ADMIN_KEY"
_JSON = "application/json"


def add_routes(app: web.Application) -> None:
    """Mount the admin routes on `app` (once; a second call changes nothing)."""
    if any(r.canonical == "/admin/deployments" for r in app.router.resources()):
        return
    app.router.add_get("/admin/deployments", list_deployments)
    app.router.add_post("/admin/deployments", add_deployment)
    app.router.add_delete("/admin/deployments/{name}", remove_deployment)


def has_admin_key(request: web.Request) -> bool:
    """True when the admin API is on and the request carries its key (never raises)."""
    expected = os.environ.get(ADMIN_KEY_ENV, "")
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return bool(expected) and scheme.lower() == "bearer" and hmac.compare_digest(
        token.strip().encode(), expected.encode())


def check_admin(request: web.Request) -> None:
    """Raise unless the request carries the admin key."""
    expected = os.environ.get(ADMIN_KEY_ENV, "")
    if not expected:
        raise PermissionDenied(
            f"the admin API is disabled: start the gateway with {ADMIN_KEY_ENV} set to enable "
            "/admin routes", code="admin_disabled")
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationFailed(
            "missing admin key: send 'Authorization: Bearer <admin key>' "
            f"(the value of {ADMIN_KEY_ENV} on the gateway)", code="missing_admin_key")
    if not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise AuthenticationFailed("invalid admin key", code="invalid_admin_key")


async def list_deployments(request: web.Request) -> web.Response:
    check_admin(request)
    router = state_of(request).router
    body = {"object": "list", "data": [dynamic.describe(d) for d in router.deployments]}
    return web.Response(body=orjson.dumps(body), content_type=_JSON)


async def add_deployment(request: web.Request) -> web.Response:
    check_admin(request)
    st = state_of(request)
    if st.deployments is None:
        _check_single_worker(st)
    settings = _parse_deployment(await request.read())
    if st.settings.server.offline and not settings.is_local:
        raise PermissionDenied(
            f"deployment {settings.name!r}: this gateway runs offline and refuses "
            f"{settings.kind!r} deployments", code="offline_mode")
    if st.meter is not None:
        st.meter.check_deployment(settings)
    try:
        dep = Deployment(registry.create(settings), st.settings.router.breaker)
    except ConfigError as exc:
        raise InvalidParameters(str(exc), code="invalid_deployment") from None
    replace = request.query.get("replace", "").lower() in ("1", "true", "yes")
    try:
        if st.deployments is not None:  # stored: every worker and replica serves it
            old = await st.deployments.publish(settings, dep, replace)
        else:
            old = dynamic.add(st.router, dep, replace=replace)
    except dynamic.DeploymentExists:
        await dep.provider.close()
        err = InvalidRequest(
            f"deployment {settings.name!r} already exists; DELETE /admin/deployments/"
            f"{settings.name} first, or POST with ?replace=true", code="deployment_exists")
        err.status = 409
        raise err from None
    if st.meter is not None:  # no await since it was added: no request has settled on it yet
        st.meter.add_deployment(settings)
    ops.refresh_models(st)
    body = dynamic.describe(dep) | {"replaced": old is not None}
    return web.Response(status=201, body=orjson.dumps(body), content_type=_JSON)


async def remove_deployment(request: web.Request) -> web.Response:
    check_admin(request)
    st = state_of(request)
    name = request.match_info["name"]
    if st.deployments is not None:
        found = await st.deployments.withdraw(name)
    else:
        _check_single_worker(st)
        found = dynamic.remove(st.router, name) is not None
    if not found:
        raise DeploymentNotFound(f"no deployment named {name!r}; GET /admin/deployments lists them")
    ops.refresh_models(st)
    body = {"object": "deployment", "name": name, "deleted": True}
    return web.Response(body=orjson.dumps(body), content_type=_JSON)


def _parse_deployment(raw: bytes) -> DeploymentSettings:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest("the body is not valid JSON", code="invalid_json") from None
    if not isinstance(obj, dict):
        raise InvalidRequest("the body must be a JSON object describing one deployment",
                             code="invalid_json")
    try:
        return DeploymentSettings.model_validate(obj)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or None
        problems = "; ".join(
            f"{'.'.join(str(x) for x in e['loc']) or 'deployment'}: {e['msg']}"
            for e in exc.errors())
        raise InvalidParameters(f"invalid deployment: {problems}", param=where,
                                code="invalid_deployment") from None


def _check_single_worker(st: AppState) -> None:
    workers = st.settings.server.workers
    if workers > 1:
        err = InvalidRequest(
            f"this gateway runs {workers} worker processes, each with its own routing table; "
            "without a database (billing off), a change here would reach one of them only. "
            "Turn billing on (the workers then share deployments through its database) or run "
            "--workers 1 to change deployments at run time", code="multi_worker")
        err.status = 409
        raise err

