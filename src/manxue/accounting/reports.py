"""Reports from the ledger: rows, totals by tenant / key / model / deployment / day, invoices."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Date, Engine, String, cast, func, select

from manxue.accounting import fixed_costs as fc
from manxue.accounting.fixed_costs import FixedCost
from manxue.accounting.money import text as money_text
from manxue.errors import ConfigError, InvalidParameters, TenantNotFound
from manxue.store.tables import api_keys, ledger, tenants
from manxue.timeutil import assume_utc

DIMENSIONS = ("tenant", "key", "model", "deployment", "day")
_MONTH = re.compile(r"[0-9]{4}-[0-9]{2}")


def _filters(q: Any, tenant: str | None, key: str | None, since: datetime | None,
             until: datetime | None) -> Any:
    if tenant is not None:
        q = q.where(tenants.c.name == tenant)
    if key is not None:
        q = q.where((ledger.c.key_id == key) | (api_keys.c.prefix == key))
    # SQLite compares stored times as text, all in UTC: so must the bounds be
    if since is not None:
        q = q.where(ledger.c.at >= assume_utc(since))
    if until is not None:
        q = q.where(ledger.c.at < assume_utc(until))
    return q


def _joined(*cols: Any) -> Any:
    return (select(*cols)
            .select_from(ledger.outerjoin(tenants, tenants.c.id == ledger.c.tenant_id)
                         .outerjoin(api_keys, api_keys.c.id == ledger.c.key_id)))


def usage_rows(engine: Engine, *, tenant: str | None = None, key: str | None = None,
               since: datetime | None = None, until: datetime | None = None,
               limit: int | None = None) -> list[dict[str, Any]]:
    """Ledger rows, oldest first, with money as decimal strings; with `limit`, the newest
    `limit` rows (still oldest first)."""
    q = _joined(ledger, tenants.c.name.label("tenant"), api_keys.c.prefix.label("key_prefix"))
    q = _filters(q, tenant, key, since, until)
    if limit is None:
        q = q.order_by(ledger.c.at, ledger.c.request_id)
    else:
        q = q.order_by(ledger.c.at.desc(), ledger.c.request_id.desc()).limit(limit)
    out = []
    with engine.connect() as c:
        rows = list(c.execute(q))
        for r in (rows if limit is None else reversed(rows)):
            d = {str(k): v for k, v in r._mapping.items()}
            d["at"] = assume_utc(d["at"]).isoformat()
            d["cost"] = money_text(d.pop("cost_nano"))
            d["upstream_cost"] = money_text(d.pop("upstream_cost_nano"))
            d["unbilled"] = money_text(d.pop("unbilled_nano"))
            out.append(d)
    return out


_USAGE_COLUMNS = ("request_id", "at", "key_id", "model", "status", "prompt_tokens",
                  "cache_hit_tokens", "cache_miss_tokens", "completion_tokens",
                  "reasoning_tokens", "usage_source", "price_list", "currency", "price_hit",
                  "price_miss", "price_output", "cost_nano", "latency_ms", "ttft_ms")


def ledger_row(engine: Engine, request_id: str) -> dict[str, Any] | None:
    """One finished request as billed (tokens, prices, cost; no upstream names or costs), its
    `at` in UTC; None if the ledger has no such request (yet)."""
    q = select(*(ledger.c[c] for c in _USAGE_COLUMNS)).where(ledger.c.request_id == request_id)
    with engine.connect() as c:
        row = c.execute(q).first()
    if row is None:
        return None
    out = {str(k): v for k, v in row._mapping.items()}
    out["at"] = assume_utc(out["at"])
    return out


def summary(engine: Engine, by: str, *, tenant: str | None = None, key: str | None = None,
            since: datetime | None = None, until: datetime | None = None,
            fixed: Mapping[str, FixedCost] | None = None) -> list[dict[str, Any]]:
    """Requests, tokens, cache-hit rate, revenue, upstream cost and margin per group.

    `fixed` (deployments that cost by the hour, see `fixed_costs`) adds their GPU-hours to
    totals by deployment or by day, unless the report is for one tenant or key."""
    if by not in DIMENSIONS:
        raise InvalidParameters(f"group by one of: {', '.join(DIMENSIONS)}", param="by")
    group = {
        "tenant": func.coalesce(tenants.c.name, "(no key)"),
        "key": func.coalesce(api_keys.c.prefix, "(no key)"),
        "model": ledger.c.model,
        "deployment": func.coalesce(ledger.c.deployment, "(none)"),
        "day": (func.date(ledger.c.at) if engine.dialect.name == "sqlite"  # naive UTC text
                # the UTC date, whatever the session's time zone
                else cast(cast(func.timezone("UTC", ledger.c.at), Date), String)),
    }[by].label("group")
    q = _joined(
        group, ledger.c.currency,
        func.count().label("requests"),
        func.sum(ledger.c.prompt_tokens).label("prompt_tokens"),
        func.sum(ledger.c.cache_hit_tokens).label("cache_hit_tokens"),
        func.sum(ledger.c.cache_miss_tokens).label("cache_miss_tokens"),
        func.sum(ledger.c.completion_tokens).label("completion_tokens"),
        func.sum(ledger.c.reasoning_tokens).label("reasoning_tokens"),
        func.sum(ledger.c.cost_nano).label("cost_nano"),
        func.sum(ledger.c.upstream_cost_nano).label("upstream_cost_nano"),
        func.sum(ledger.c.unbilled_nano).label("unbilled_nano"),
    )
    q = _filters(q, tenant, key, since, until).group_by(group, ledger.c.currency).order_by(group)
    groups: dict[tuple[str, str | None], _Totals] = {}
    with engine.connect() as c:
        for r in c.execute(q):
            groups[(str(r.group), r.currency)] = _Totals(
                int(r.requests), int(r.prompt_tokens or 0), int(r.cache_hit_tokens or 0),
                int(r.cache_miss_tokens or 0), int(r.completion_tokens or 0),
                int(r.reasoning_tokens or 0), int(r.cost_nano or 0), int(r.upstream_cost_nano or 0),
                unbilled=int(r.unbilled_nano or 0))
    charged = fixed if by in ("deployment", "day") and tenant is None and key is None else None
    if charged is not None:
        _add_fixed(groups, engine, by, charged, since, until)
    return [_summary_row(by, name, currency, t, charged is not None)
            for (name, currency), t in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))]


@dataclass(slots=True)
class _Totals:
    requests: int = 0
    prompt: int = 0
    hit: int = 0
    miss: int = 0
    completion: int = 0
    reasoning: int = 0
    revenue: int = 0
    upstream: int = 0
    unbilled: int = 0  # usage past reservations, not charged: revenue forgone
    fixed: int = 0
    fixed_hours: Decimal = Decimal(0)


def _add_fixed(groups: dict[tuple[str, str | None], _Totals], engine: Engine, by: str,
               fixed: Mapping[str, FixedCost], since: datetime | None,
               until: datetime | None) -> None:
    for name, (start, end) in fc.windows(engine, fixed, since, until).items():
        cost = fixed[name]
        spans = {name: (start, end)} if by == "deployment" else fc.days(start, end)
        for group, (a, b) in spans.items():  # by day, each day is rounded on its own
            t = groups.setdefault((group, cost.currency), _Totals())
            t.fixed += fc.accrued_nano(cost, a, b)
            t.fixed_hours += fc.hours(a, b)


def _summary_row(by: str, name: str, currency: str | None, t: _Totals,
                 with_fixed: bool) -> dict[str, Any]:
    cost = t.upstream + t.fixed
    row: dict[str, Any] = {
        by: name, "currency": currency, "requests": t.requests, "prompt_tokens": t.prompt,
        "cache_hit_tokens": t.hit, "cache_miss_tokens": t.miss,
        "completion_tokens": t.completion, "reasoning_tokens": t.reasoning,
        "cache_hit_rate": round(t.hit / t.prompt, 4) if t.prompt else 0.0,
        "revenue": money_text(t.revenue), "upstream_cost": money_text(t.upstream),
        "unbilled": money_text(t.unbilled),
    }
    if with_fixed:
        row["fixed_cost"] = money_text(t.fixed)
        row["fixed_cost_hours"] = float(round(t.fixed_hours, 4))
    row["margin"] = money_text(t.revenue - cost)
    row["cost_profit_margin"] = round((t.revenue - cost) / cost, 4) if cost else None
    return row


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """The start of `month` (YYYY-MM, 0001-01 to 9999-11) and of the month after, in UTC."""
    try:
        if not _MONTH.fullmatch(month):
            raise ValueError(month)
        start = assume_utc(datetime.strptime(month, "%Y-%m"))
    except ValueError:
        raise InvalidParameters(f"month must look like 2026-11 (YYYY-MM, months 01 to 12), "
                                f"not {month!r}", param="month") from None
    if start.year == 9999 and start.month == 12:
        raise InvalidParameters("month must be 9999-11 or earlier", param="month")
    if start.month == 12:
        return start, start.replace(year=start.year + 1, month=1)
    end = start.replace(month=start.month + 1)
    return start, end


_INVOICE_COLUMNS = ("key", "model", "requests", "input_cache_hit_tokens", "input_cache_miss_tokens",
                    "output_tokens", "of_which_reasoning_tokens", "amount", "currency")


def invoice(engine: Engine, tenant: str, month: str) -> dict[str, Any]:
    """One tenant's month: a line per key and model with tokens and amount, and a total per
    currency. An unknown tenant is refused (404), not invoiced as empty."""
    start, end = month_bounds(month)
    q = _joined(
        api_keys.c.prefix, ledger.c.model, ledger.c.currency,
        func.count().label("requests"),
        func.sum(ledger.c.cache_hit_tokens).label("hit"),
        func.sum(ledger.c.cache_miss_tokens).label("miss"),
        func.sum(ledger.c.completion_tokens).label("out"),
        func.sum(ledger.c.reasoning_tokens).label("reasoning"),
        func.sum(ledger.c.cost_nano).label("cost_nano"),
    )
    q = (_filters(q, tenant, None, start, end)
         .group_by(api_keys.c.prefix, ledger.c.model, ledger.c.currency)
         .order_by(api_keys.c.prefix, ledger.c.model))
    lines: list[dict[str, Any]] = []
    totals: dict[str, int] = {}
    with engine.connect() as c:
        if c.execute(select(tenants.c.id).where(tenants.c.name == tenant)).first() is None:
            raise TenantNotFound(f"no tenant named {tenant!r} (`manxue tenants list` shows them)",
                                 param="tenant")
        for r in c.execute(q):
            amount = int(r.cost_nano or 0)
            cur = r.currency or ""
            totals[cur] = totals.get(cur, 0) + amount
            lines.append(dict(zip(_INVOICE_COLUMNS, (
                r.prefix or "", r.model, int(r.requests), int(r.hit or 0), int(r.miss or 0),
                int(r.out or 0), int(r.reasoning or 0), money_text(amount), cur), strict=True)))
    return {"tenant": tenant, "month": month, "lines": lines,
            "totals": [{"currency": cur, "amount": money_text(total)}
                       for cur, total in sorted(totals.items())]}


def invoice_csv(engine: Engine, tenant: str, month: str) -> str:
    """`invoice` as CSV: its lines, then a TOTAL line per currency."""
    inv = invoice(engine, tenant, month)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["tenant", "month", *_INVOICE_COLUMNS])
    for line in inv["lines"]:
        w.writerow([tenant, month, *line.values()])
    for t in inv["totals"]:
        w.writerow([tenant, month, "TOTAL", "", "", "", "", "", "", t["amount"], t["currency"]])
    return buf.getvalue()


def hourly_tokens(engine: Engine, since: datetime, until: datetime,
                  models: tuple[str, ...] = ()) -> dict[datetime, tuple[int, int, int]]:
    """Prompt, cache-hit and completion tokens per UTC hour in [since, until), optionally of
    some request models only (the traffic profile `plan build-vs-buy --from-ledger` reads);
    summed by the database, one row per hour."""
    hour = (func.strftime("%Y-%m-%d %H:00:00", ledger.c.at) if engine.dialect.name == "sqlite"
            else func.to_char(func.timezone("UTC", ledger.c.at), "YYYY-MM-DD HH24:00:00"))
    q = select(hour, func.sum(ledger.c.prompt_tokens), func.sum(ledger.c.cache_hit_tokens),
               func.sum(ledger.c.completion_tokens)
               ).where(ledger.c.at >= since, ledger.c.at < until).group_by(hour)
    if models:
        q = q.where(ledger.c.model.in_(list(models)))
    with engine.connect() as conn:
        return {assume_utc(datetime.fromisoformat(h)): (int(p or 0), int(c or 0), int(o or 0))
                for h, p, c, o in conn.execute(q)}


def hourly_tokens_at(database_url: str, since: datetime, until: datetime,
                     models: tuple[str, ...] = ()) -> dict[datetime, tuple[int, int, int]]:
    """`hourly_tokens` of the ledger in the database at `database_url`; ConfigError when that
    database cannot be opened or read (named by its host, never its credentials)."""
    from sqlalchemy.exc import SQLAlchemyError

    from manxue.store.db import open_engine

    try:
        engine = open_engine(database_url)
        try:
            return hourly_tokens(engine, since, until, models)
        finally:
            engine.dispose()
    except SQLAlchemyError as exc:
        where = database_url.rpartition("@")[2]
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise ConfigError(f"cannot read the usage ledger at {where}: {reason}; check "
                          "database_url (or MANXUE_DATABASE_URL) in the config") from None
