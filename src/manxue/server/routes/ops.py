"""Liveness, readiness, Prometheus metrics and the model list.

On a gateway bound to an address other than loopback ([server] host), or for a client not on
this machine (a request through a reverse proxy counts as remote), /metrics needs the admin
key and /ready tells callers without it only `{"status": ...}` (with the same status code),
unless `[server] public_metrics = true`. /health is always public.
"""

from __future__ import annotations

import orjson
from aiohttp import web

from manxue.accounting.keys import KeyRecord
from manxue.errors import ModelNotFound, PermissionDenied
from manxue.server.client_address import is_loopback_host
from manxue.server.openapi import document as openapi_document
from manxue.server.state import AppState, local_client, state_of


async def openapi(request: web.Request) -> web.Response:
    """The public API's OpenAPI document."""
    return web.Response(body=orjson.dumps(openapi_document()), content_type="application/json")


async def health(request: web.Request) -> web.Response:
    return web.Response(body=b'{"status":"ok"}', content_type="application/json")


async def ready(request: web.Request) -> web.Response:
    st = state_of(request)
    router = st.router
    deps = {
        d.name: {"model": d.settings.model, "breaker": d.breaker.state.name.lower(),
                 "in_flight": d.in_flight}
        for d in router.deployments
    }
    journal_failed = st.meter.writer.journal.failed if st.meter is not None else None
    shared = await st.meter.unreachable() if st.meter is not None and not st.draining else None
    ok = router.ready() and journal_failed is None and shared is None and not st.draining
    body: dict[str, object] = {"status": "ready" if ok else "unavailable", "deployments": deps}
    if st.draining:
        body["status"] = "draining"
        body["message"] = "this process is shutting down: send requests to another replica"
    elif shared is not None:
        body["message"] = f"{shared}: requests cannot be admitted or billed until it is back"
    elif journal_failed is not None:
        body["message"] = (f"the ledger journal cannot be written ({journal_failed}): free disk "
                           "space in the data directory; requests are refused until then")
    elif not ok:
        body["message"] = ("no deployment can take requests: configure one with --config, "
                           "or wait for paused ones to recover")
    if _guarded(request) and not _is_admin(request):
        body = {"status": body["status"]}  # no deployment names, breakers or messages
    return web.Response(status=200 if ok else 503, body=orjson.dumps(body),
                        content_type="application/json")


async def metrics(request: web.Request) -> web.Response:
    if _guarded(request):
        _check_metrics_admin(request)
    body = state_of(request).metrics.render()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4"})


def _guarded(request: web.Request) -> bool:
    """True when operational details are for the admin only: `[server] public_metrics` is
    off, and the gateway is bound to an address other than loopback or the client is not on
    this machine (forwarding headers are believed from trusted proxies only)."""
    st = state_of(request)
    server = st.settings.server
    if server.public_metrics:
        return False
    return not is_loopback_host(server.host) or not st.proxies.is_local(request)


def _is_admin(request: web.Request) -> bool:
    from manxue.server.routes.admin_deployments import has_admin_key  # it imports this module

    return has_admin_key(request)


def _check_metrics_admin(request: web.Request) -> None:
    from manxue.server.routes.admin_deployments import ADMIN_KEY_ENV, check_admin

    try:
        check_admin(request)
    except PermissionDenied:  # no admin key configured at all
        raise PermissionDenied(
            "/metrics needs the admin key for clients not on this machine (or on a gateway bound "
            f"to a network address): start it with {ADMIN_KEY_ENV} set and send 'Authorization: "
            "Bearer <admin key>', or set [server] public_metrics = true",
            code="metrics_need_admin_key") from None


def _key(request: web.Request) -> KeyRecord | None:
    """The caller's key (None: metering off, or open mode on loopback)."""
    meter = state_of(request).meter
    if meter is None:
        return None
    return meter.authenticate(request.headers.get("Authorization"), request.headers.get("x-api-key"),
                              lambda: local_client(request))


async def models(request: web.Request) -> web.Response:
    st = state_of(request)
    key = _key(request)
    if st.meter is not None and key is not None and key.models is not None:
        allowed = st.meter.allowed_models(key, st.router.models())
        return web.Response(body=models_body(allowed), content_type="application/json")
    return web.Response(body=st.models_body, content_type="application/json")


async def model(request: web.Request) -> web.Response:
    st = state_of(request)
    name = request.match_info["model"]
    key = _key(request)
    if name not in st.router.models() or (key is not None and key.models is not None
                                          and name not in key.models):
        raise ModelNotFound(f"model '{name}' is not served here; GET /v1/models lists the models",
                            param="model")
    return web.Response(body=orjson.dumps(_model_card(name)), content_type="application/json")


def _model_card(name: str) -> dict[str, object]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "manxue"}


def models_body(names: list[str]) -> bytes:
    return orjson.dumps({"object": "list", "data": [_model_card(n) for n in names]})


def refresh_models(state: AppState) -> None:
    """Rebuild the cached /v1/models answer after the deployments changed."""
    state.models_body = models_body(state.router.models())
