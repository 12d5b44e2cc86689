"""Admin API behind the usage dashboard (/dashboard).

    GET /admin/dashboard/series?bucket=hour|day&by=tenant|key|model|deployment&since=&until=
                               &tenant=&key=&top=8
        totals per hour or day from the ledger (manxue.accounting.timeseries.series)
    GET /admin/dashboard/errors?since=&until=&limit=10
        failed requests from the ledger, grouped by model and message; and, since this
        process started, error answers by route and status and failed upstream attempts by
        deployment and reason (from the Prometheus counters)

Every call needs `Authorization: Bearer <MANXUE_ADMIN_KEY>`. Totals per group without time
are /admin/usage?by=...; deployments and their breakers are /admin/deployments.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from manxue.accounting import timeseries
from manxue.errors import InvalidParameters
from manxue.server.routes.admin_keys import admin_meter, query_int, query_time
from manxue.server.state import state_of


def add_routes(app: web.Application) -> None:
    """Mount the dashboard's admin routes on `app` (once; a second call changes nothing)."""
    if any(r.canonical == "/admin/dashboard/series" for r in app.router.resources()):
        return
    app.router.add_get("/admin/dashboard/series", series)
    app.router.add_get("/admin/dashboard/errors", errors)


def _int(value: str | None, name: str, default: int, most: int) -> int:
    n = query_int(value, name, default, most)
    assert n is not None  # the default is a number
    return n


_EARLIEST = datetime(1000, 1, 1, tzinfo=UTC)  # buckets are counted from the bounds: keep them
_LATEST = datetime(9999, 1, 1, tzinfo=UTC)    # well inside what a datetime can hold


def _time(value: str | None, name: str) -> datetime | None:
    """`query_time`, between years 1000 and 9998."""
    dt = query_time(value, name)
    if dt is not None and not _EARLIEST <= dt < _LATEST:
        raise InvalidParameters(f"{name} must be between 1000-01-01 and 9998-12-31", param=name)
    return dt


def _json(obj: Any) -> web.Response:
    return web.Response(body=orjson.dumps(obj), content_type="application/json",
                        headers={"Cache-Control": "no-store"})


async def series(request: web.Request) -> web.Response:
    meter = admin_meter(request)
    q = request.query
    since, until = _time(q.get("since"), "since"), _time(q.get("until"), "until")
    top = _int(q.get("top"), "top", 8, 50)
    await meter.writer.flush()  # include everything settled so far
    data = await asyncio.to_thread(
        timeseries.series, meter.store.engine, q.get("bucket") or "hour", by=q.get("by") or None,
        since=since, until=until, tenant=q.get("tenant") or None, key=q.get("key") or None, top=top)
    return _json(data)


async def errors(request: web.Request) -> web.Response:
    meter = admin_meter(request)
    q = request.query
    since, until = _time(q.get("since"), "since"), _time(q.get("until"), "until")
    limit = _int(q.get("limit"), "limit", 10, 100)
    await meter.writer.flush()
    failed = await asyncio.to_thread(timeseries.top_errors, meter.store.engine, since=since,
                                     until=until, limit=limit)
    metrics = state_of(request).metrics
    return _json({
        "object": "dashboard.errors",
        "requests": failed,
        "http": _counted(metrics.requests, ("route", "status"), limit,
                         keep=lambda labels: labels["status"] >= "400"),
        "upstream": _counted(metrics.upstream_errors, ("deployment", "reason"), limit),
        "stream_interrupted": _counted(metrics.stream_errors, ("deployment",), limit),
    })


def _counted(counter: Any, names: tuple[str, ...], limit: int,
             keep: Callable[[dict[str, str]], bool] | None = None) -> list[dict[str, Any]]:
    """A counter's non-zero children, largest first (since this process started)."""
    out: list[dict[str, Any]] = []
    for family in counter.collect():
        for s in family.samples:
            if not s.name.endswith("_total") or s.value <= 0:
                continue
            labels = {n: s.labels.get(n, "") for n in names}
            if keep is None or keep(labels):
                out.append({**labels, "count": int(s.value)})
    out.sort(key=lambda d: -d["count"])
    return out[:limit]
