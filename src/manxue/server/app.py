"""Build the aiohttp application from settings."""

from __future__ import annotations

import logging
from datetime import timedelta

from aiohttp import web

from manxue.accounting.deployment_store import DeploymentStore
from manxue.accounting.stored_responses import MemoryResponseStore, SqlResponseStore
from manxue.gateway.deployment import Deployment
from manxue.gateway.router import Router
from manxue.gateway.service import ChatService
from manxue.metrics import Metrics
from manxue.providers import registry
from manxue.server.client_address import ProxyRule
from manxue.server.deployment_sync import DeploymentSync
from manxue.server.middleware import errors_and_metrics
from manxue.server.routes import (
    admin_dashboard,
    admin_deployments,
    admin_keys,
    balance,
    chat,
    completions,
    messages,
    ops,
    plan,
    responses,
    verify,
)
from manxue.server.routes import web as web_pages
from manxue.server.state import STATE_KEY, AppState
from manxue.settings import Settings

log = logging.getLogger("manxue.server")


def build_state(settings: Settings) -> AppState:
    settings.check_offline()
    metrics = Metrics()
    deployments = [Deployment(registry.create(d), settings.router.breaker)
                   for d in settings.deployments]
    router = Router(settings.router, deployments, metrics)
    state = AppState(settings=settings, metrics=metrics, router=router,
                     chat=ChatService(router, metrics),
                     proxies=ProxyRule(settings.server.trusted_proxies))
    state.models_body = ops.models_body(router.models())
    if settings.billing.enabled:
        from manxue.accounting.setup import build_meter

        state.meter = build_meter(settings)
        state.meter.metrics = metrics
        state.chat.sinks.append(state.meter)
    retention = timedelta(hours=settings.responses.retention_hours)
    state.responses = SqlResponseStore(state.meter.store.engine, retention) \
        if state.meter is not None else MemoryResponseStore(retention)
    return state


def build_app(settings: Settings, state: AppState | None = None) -> web.Application:
    state = state or build_state(settings)
    app = web.Application(client_max_size=settings.server.max_body_bytes,
                          middlewares=[errors_and_metrics])
    app[STATE_KEY] = state
    for prefix in ("/v1", ""):  # DeepSeek's docs use a base URL without /v1
        app.router.add_post(f"{prefix}/chat/completions", chat.chat_completions)
        app.router.add_get(f"{prefix}/models", ops.models)
        app.router.add_get(f"{prefix}/models/{{model}}", ops.model)
    app.router.add_get("/v1/plan", plan.plan_handler)  # /plan is the planner page
    app.router.add_get("/openapi.json", ops.openapi)
    app.router.add_get("/health", ops.health)
    app.router.add_get("/ready", ops.ready)
    app.router.add_get("/metrics", ops.metrics)
    admin_deployments.add_routes(app)
    admin_keys.add_routes(app)
    admin_dashboard.add_routes(app)
    completions.add_routes(app)
    messages.add_routes(app)
    responses.add_routes(app)
    balance.add_routes(app)
    verify.add_routes(app)
    web_pages.add_routes(app)
    app.on_startup.append(_start_meter)
    app.on_cleanup.append(_stop_meter)
    app.on_cleanup.append(_close_providers)
    return app


async def _start_meter(app: web.Application) -> None:
    state = app[STATE_KEY]
    meter = state.meter
    if meter is not None:
        await meter.start()
        if meter.open_mode:
            log.warning("no API keys exist: serving clients on this machine only, without a key "
                        "(create one with `manxue keys create --tenant NAME`)")
        sync = DeploymentSync(state, DeploymentStore(meter.store.engine),
                              state.settings.billing.key_refresh_interval)
        state.deployments = sync
        if await sync.refresh():  # what other workers and replicas added before this start
            ops.refresh_models(state)
        sync.start(lambda: ops.refresh_models(state))


async def _stop_meter(app: web.Application) -> None:
    state = app[STATE_KEY]
    if state.deployments is not None:
        await state.deployments.stop()
    meter = state.meter
    if meter is not None:
        await meter.stop()


async def _close_providers(app: web.Application) -> None:
    for dep in app[STATE_KEY].router.deployments:
        await dep.provider.close()


def describe(state: AppState) -> list[str]:
    """Start-up lines: what is served, from where."""
    router = state.router
    if not router.deployments:
        return ["no model is served yet: pass --config FILE with [[deployments]] "
                "(see docs/config.example.toml)"]
    lines = []
    for d in router.deployments:
        where = d.settings.base_url or d.settings.path or "in-process"
        lines.append(f"model {d.settings.model!r} ← deployment {d.name!r} "
                     f"({d.settings.kind}, priority {d.settings.priority}, {where})")
    return lines
