"""Reports from the ledger: rows, totals by tenant / key / model / deployment / day, invoices."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Date, Engine, String, cast, func, select

from manxue.accounting.money import text as money_text
from manxue.errors import InvalidParameters
from manxue.store.tables import api_keys, ledger, tenants

DIMENSIONS = ("tenant", "key", "model", "deployment", "day")


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _filters(q: Any, tenant: str | None, key: str | None, since: datetime | None,
             until: datetime | None) -> Any:
    if tenant is not None:
        q = q.where(tenants.c.name == tenant)
    if key is not None:
        q = q.where((ledger.c.key_id == key) | (api_keys.c.prefix == key))
    if since is not None:
        q = q.where(ledger.c.at >= since)
    if until is not None:
        q = q.where(ledger.c.at < until)
    return q


def _joined(*cols: Any) -> Any:
    return (select(*cols)
            .select_from(ledger.outerjoin(tenants, tenants.c.id == ledger.c.tenant_id)
                         .outerjoin(api_keys, api_keys.c.id == ledger.c.key_id)))


def usage_rows(engine: Engine, *, tenant: str | None = None, key: str | None = None,
               since: datetime | None = None, until: datetime | None = None,
               limit: int | None = None) -> list[dict[str, Any]]:
    """Ledger rows, oldest first, with money as decimal strings."""
    q = _joined(ledger, tenants.c.name.label("tenant"), api_keys.c.prefix.label("key_prefix"))
    q = _filters(q, tenant, key, since, until).order_by(ledger.c.at, ledger.c.request_id)
    if limit is not None:
        q = q.limit(limit)
    out = []
    with engine.connect() as c:
        for r in c.execute(q):
            d = {str(k): v for k, v in r._mapping.items()}
            d["at"] = _aware(d["at"]).isoformat()
            d["cost"] = money_text(d.pop("cost_nano"))
            d["upstream_cost"] = money_text(d.pop("upstream_cost_nano"))
            out.append(d)
    return out


def summary(engine: Engine, by: str, *, tenant: str | None = None, key: str | None = None,
            since: datetime | None = None, until: datetime | None = None) -> list[dict[str, Any]]:
    """Requests, tokens, cache-hit rate, revenue, upstream cost and margin per group."""
    if by not in DIMENSIONS:
        raise InvalidParameters(f"group by one of: {', '.join(DIMENSIONS)}", param="by")
    group = {
        "tenant": func.coalesce(tenants.c.name, "(no key)"),
        "key": func.coalesce(api_keys.c.prefix, "(no key)"),
        "model": ledger.c.model,
        "deployment": func.coalesce(ledger.c.deployment, "(none)"),
        "day": (func.date(ledger.c.at) if engine.dialect.name == "sqlite"
                else cast(cast(ledger.c.at, Date), String)),
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
    )
    q = _filters(q, tenant, key, since, until).group_by(group, ledger.c.currency).order_by(group)
    out = []
    with engine.connect() as c:
        for r in c.execute(q):
            revenue, upstream = int(r.cost_nano or 0), int(r.upstream_cost_nano or 0)
            prompt = int(r.prompt_tokens or 0)
            out.append({
                by: str(r.group), "currency": r.currency, "requests": int(r.requests),
                "prompt_tokens": prompt, "cache_hit_tokens": int(r.cache_hit_tokens or 0),
                "cache_miss_tokens": int(r.cache_miss_tokens or 0),
                "completion_tokens": int(r.completion_tokens or 0),
                "reasoning_tokens": int(r.reasoning_tokens or 0),
                "cache_hit_rate": round(int(r.cache_hit_tokens or 0) / prompt, 4) if prompt else 0.0,
                "revenue": money_text(revenue), "upstream_cost": money_text(upstream),
                "margin": money_text(revenue - upstream),
                "cost_profit_margin": (round((revenue - upstream) / upstream, 4) if upstream else None),
            })
    return out


def month_bounds(month: str) -> tuple[datetime, datetime]:
    try:
        start = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    except ValueError:
        raise InvalidParameters(f"month must look like 2026-11, not {month!r}", param="month") from None
    if start.month == 12:
        return start, start.replace(year=start.year + 1, month=1)
    end = start.replace(month=start.month + 1)
    return start, end


def invoice_csv(engine: Engine, tenant: str, month: str) -> str:
    """One line per key and model with tokens and amounts, then a total per currency."""
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
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["tenant", "month", "key", "model", "requests", "input_cache_hit_tokens",
                "input_cache_miss_tokens", "output_tokens", "of_which_reasoning_tokens",
                "amount", "currency"])
    totals: dict[str, int] = {}
    with engine.connect() as c:
        for r in c.execute(q):
            amount = int(r.cost_nano or 0)
            cur = r.currency or ""
            totals[cur] = totals.get(cur, 0) + amount
            w.writerow([tenant, month, r.prefix or "", r.model, int(r.requests), int(r.hit or 0),
                        int(r.miss or 0), int(r.out or 0), int(r.reasoning or 0),
                        money_text(amount), cur])
    for cur, total in sorted(totals.items()):
        w.writerow([tenant, month, "TOTAL", "", "", "", "", "", "", money_text(total), cur])
    return buf.getvalue()
