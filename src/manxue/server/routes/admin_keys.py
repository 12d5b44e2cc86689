"""Admin API for keys, usage and invoices (the same operations as `manxue keys|usage|invoice`).

    GET  /admin/keys[?tenant=T]                 POST /admin/keys              (create)
    POST /admin/keys/{ref}/disable|enable|rotate POST /admin/keys/{ref}/topup  {"amount": "10"}
    PATCH /admin/keys/{ref}  {"rpm": 60, "expires_at": "2027-01-01T00:00:00Z", "models": null, ...}
    GET  /admin/tenants                      PATCH /admin/tenants/{name}  {"price_list": ID|null}
    GET  /admin/usage?tenant=&key=&since=&until=&by=&limit=
    GET  /admin/invoice?tenant=T&month=2026-11  (text/csv)

Every call needs `Authorization: Bearer <MANXUE_ADMIN_KEY>`.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
from aiohttp import web

from manxue.accounting import reports
from manxue.accounting.fixed_costs import fixed_costs
from manxue.accounting.meter import Meter
from manxue.errors import ActionNotFound, InvalidParameters, InvalidRequest, ServiceUnavailable
from manxue.server.routes.admin_deployments import check_admin
from manxue.server.state import state_of
from manxue.timeutil import assume_utc

_JSON = "application/json"


def add_routes(app: web.Application) -> None:
    app.router.add_get("/admin/keys", list_keys)
    app.router.add_post("/admin/keys", create_key)
    app.router.add_patch("/admin/keys/{ref}", update_key)
    app.router.add_post("/admin/keys/{ref}/{action}", change_key)
    app.router.add_get("/admin/tenants", list_tenants)
    app.router.add_patch("/admin/tenants/{name}", change_tenant)
    app.router.add_get("/admin/usage", usage)
    app.router.add_get("/admin/invoice", invoice)


def admin_meter(request: web.Request) -> Meter:
    """The meter, for a request carrying the admin key (503 when metering is off)."""
    check_admin(request)
    for name, value in request.query.items():  # PostgreSQL refuses NUL in text: say so first
        if "\x00" in value:
            raise InvalidParameters(f"{name} must not contain a NUL character", param=name)
    meter = state_of(request).meter
    if meter is None:
        raise ServiceUnavailable("metering is off on this gateway ([billing] enabled = false)",
                                 code="metering_off")
    return meter


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(obj), content_type=_JSON)


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        data = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError:
        raise InvalidRequest("body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidRequest("body must be a JSON object")
    return data


def _check_price_list(meter: Meter, ref: Any) -> None:
    """A price list named in a body must be one the gateway knows (None: not named)."""
    if ref is not None and (not isinstance(ref, str) or ref not in meter.prices.lists):
        raise InvalidParameters(f"unknown price list {ref!r}; `manxue prices` lists the ids",
                                param="price_list")


def _decimal(value: Any, name: str) -> Decimal | None:
    if value is None:
        return None
    try:
        d = Decimal(str(value)) if isinstance(value, int | float | str) and not isinstance(value, bool) \
            else None
    except InvalidOperation:
        d = None
    if d is None or not d.is_finite():
        raise InvalidParameters(f"{name} must be a number", param=name)
    return d


def query_time(value: Any, name: str) -> datetime | None:
    """An ISO 8601 query parameter as an aware datetime (UTC when no zone is given)."""
    if value is None or value == "":
        return None
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        return assume_utc(datetime.fromisoformat(value))
    except (ValueError, OverflowError):  # overflow: a zone that moves it past year 1 or 9999
        raise InvalidParameters(f"{name} must be an ISO 8601 time between years 1 and 9999, "
                                "e.g. 2026-11-01 or 2026-11-01T08:00:00Z", param=name) from None


def query_int(value: str | None, name: str, default: int | None, most: int) -> int | None:
    """A whole-number query parameter from 1 to `most` (`default` when absent or empty)."""
    if value is None or value == "":
        return default
    digits = value.lstrip("0")
    if (not (value.isascii() and value.isdecimal()) or len(digits) > len(str(most))
            or not 1 <= int(value) <= most):
        raise InvalidParameters(f"{name} must be a whole number from 1 to {most}", param=name)
    return int(value)


USAGE_LIMIT_MAX = 1_000_000


async def list_keys(request: web.Request) -> web.Response:
    meter = admin_meter(request)
    store = meter.store
    recs, spent = await asyncio.to_thread(lambda: (store.all(request.query.get("tenant")), store.spent()))
    return _json({"object": "list", "data": [r.public(spent.get(r.id, 0)) for r in recs]})


_CREATE_FIELDS = {"tenant", "name", "balance", "currency", "price_list", "models", "rpm", "tpm",
                  "max_concurrency", "privacy", "expires_at", "daily_budget", "monthly_budget"}


async def create_key(request: web.Request) -> web.Response:
    meter = admin_meter(request)
    b = await _body(request)
    unknown = set(b) - _CREATE_FIELDS
    if unknown:
        raise InvalidParameters(f"unknown fields: {', '.join(sorted(unknown))}")
    tenant = b.get("tenant")
    if not isinstance(tenant, str) or not tenant:
        raise InvalidRequest("'tenant' is required", param="tenant")
    models = b.get("models")
    if isinstance(models, str):
        models = [m.strip() for m in models.split(",") if m.strip()]
    for f in ("rpm", "tpm", "max_concurrency"):
        if b.get(f) is not None and not isinstance(b[f], int):
            raise InvalidParameters(f"{f} must be an integer", param=f)
    _check_price_list(meter, b.get("price_list"))

    def create() -> Any:
        return meter.store.create(
            tenant, name=b.get("name"), balance=_decimal(b.get("balance"), "balance"),
            currency=b.get("currency"), price_list=b.get("price_list"), models=models,
            rpm=b.get("rpm"), tpm=b.get("tpm"), max_concurrency=b.get("max_concurrency"),
            privacy=b.get("privacy"), expires_at=query_time(b.get("expires_at"), "expires_at"),
            daily_budget=_decimal(b.get("daily_budget"), "daily_budget"),
            monthly_budget=_decimal(b.get("monthly_budget"), "monthly_budget"))

    rec, secret = await asyncio.to_thread(create)
    await asyncio.to_thread(meter.keys.load)
    return _json({**rec.public(0), "key": secret}, status=201)


async def update_key(request: web.Request) -> web.Response:
    """Set (or, with null, clear) a key's settings: the fields of `KeyStore.SETTABLE`."""
    meter = admin_meter(request)
    b = await _body(request)
    changes: dict[str, Any] = dict(b)
    if "models" in changes and isinstance(changes["models"], str):
        changes["models"] = [m.strip() for m in changes["models"].split(",") if m.strip()]
    if changes.get("models") is not None and not (
            isinstance(changes["models"], list) and all(isinstance(m, str) for m in changes["models"])):
        raise InvalidParameters("models must be a list of model names", param="models")
    for f in ("daily_budget", "monthly_budget"):
        if changes.get(f) is not None:
            changes[f] = _decimal(changes[f], f)
    if changes.get("expires_at") is not None:
        changes["expires_at"] = query_time(changes["expires_at"], "expires_at")
    _check_price_list(meter, changes.get("price_list"))
    if not changes:
        raise InvalidRequest("nothing to change: give the fields to set (null clears one)")
    rec = await asyncio.to_thread(meter.store.update, request.match_info["ref"], changes)
    await asyncio.to_thread(meter.keys.load)
    return _json(rec.public(await asyncio.to_thread(lambda: meter.store.spent().get(rec.id, 0))))


async def change_key(request: web.Request) -> web.Response:
    meter = admin_meter(request)
    ref, action = request.match_info["ref"], request.match_info["action"]
    store = meter.store
    secret = None
    if action in ("disable", "enable"):
        rec = await asyncio.to_thread(store.set_disabled, ref, action == "disable")
    elif action == "rotate":
        rec, secret = await asyncio.to_thread(store.rotate, ref)
    elif action == "topup":
        b = await _body(request)
        amount = _decimal(b.get("amount"), "amount")
        if amount is None:
            raise InvalidRequest("'amount' is required", param="amount")
        rec = await asyncio.to_thread(store.topup, ref, amount, b.get("note"))
    else:
        raise ActionNotFound(f"unknown action {action!r}: disable, enable, rotate or topup")
    await asyncio.to_thread(meter.keys.load)
    data = rec.public(await asyncio.to_thread(lambda: store.spent().get(rec.id, 0)))
    if secret:
        data["key"] = secret
    return _json(data)


async def list_tenants(request: web.Request) -> web.Response:
    meter = admin_meter(request)
    return _json({"object": "list", "data": await asyncio.to_thread(meter.store.tenants)})


async def change_tenant(request: web.Request) -> web.Response:
    meter = admin_meter(request)
    b = await _body(request)
    unknown = set(b) - {"price_list"}
    if unknown or "price_list" not in b:
        raise InvalidParameters("give {\"price_list\": \"ID\"} (or null for the gateway's default)",
                                param="price_list")
    ref = b["price_list"]
    _check_price_list(meter, ref)
    row = await asyncio.to_thread(meter.store.set_tenant_price_list, request.match_info["name"], ref)
    await asyncio.to_thread(meter.keys.load)
    return _json(row)


async def usage(request: web.Request) -> web.Response:
    meter = admin_meter(request)
    q = request.query
    since, until = query_time(q.get("since"), "since"), query_time(q.get("until"), "until")
    limit = query_int(q.get("limit"), "limit", None, USAGE_LIMIT_MAX)
    engine = meter.store.engine
    await meter.writer.flush()  # include everything settled so far
    if q.get("by"):
        st = state_of(request)
        fixed = fixed_costs((d.settings for d in st.router.deployments), st.settings.billing.currency)
        data = await asyncio.to_thread(reports.summary, engine, q["by"], tenant=q.get("tenant"),
                                       key=q.get("key"), since=since, until=until, fixed=fixed)
    else:
        data = await asyncio.to_thread(reports.usage_rows, engine, tenant=q.get("tenant"),
                                       key=q.get("key"), since=since, until=until,
                                       limit=limit)
    return _json({"object": "list", "data": data})


async def invoice(request: web.Request) -> web.Response:
    meter = admin_meter(request)
    tenant, month = request.query.get("tenant"), request.query.get("month")
    if not tenant or not month:
        raise InvalidRequest("give ?tenant=NAME&month=YYYY-MM")
    reports.month_bounds(month)  # 422 for a month it cannot invoice, before the flush
    fmt = request.query.get("format", "csv")
    if fmt not in ("csv", "json"):
        raise InvalidParameters("format must be csv or json", param="format")
    await meter.writer.flush()
    if fmt == "json":
        return _json(await asyncio.to_thread(reports.invoice, meter.store.engine, tenant, month))
    text = await asyncio.to_thread(reports.invoice_csv, meter.store.engine, tenant, month)
    name = re.sub(r"[^A-Za-z0-9._-]", "_", f"invoice-{tenant}-{month}")  # a safe header value
    return web.Response(text=text, content_type="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{name}.csv"'})
