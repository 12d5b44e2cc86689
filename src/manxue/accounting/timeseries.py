"""Ledger totals per hour or day, and the most frequent failures, for the usage dashboard.

    series(engine, "hour", by="model", since=..., until=...)
        every bucket between since and until (empty ones as zeros), one series per group
        (the busiest `top` groups; the rest summed as "(other)"), money per currency
    top_errors(engine, since=..., limit=10)
        failed and incomplete requests grouped by model and error text, most frequent first

Buckets are UTC and labelled by their start (`2026-11-28T20:00:00Z`).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, case, func, select

from manxue.accounting.money import text as money_text
from manxue.errors import InvalidParameters
from manxue.store.tables import api_keys, ledger, tenants
from manxue.timeutil import assume_utc

BUCKETS = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
GROUPS = ("tenant", "key", "model", "deployment")
MAX_BUCKETS = 24 * 93  # three months of hours
COUNTS = ("requests", "errors", "prompt_tokens", "cache_hit_tokens", "cache_miss_tokens",
          "completion_tokens", "reasoning_tokens")
OTHER = "(other)"


def floor(at: datetime, bucket: str) -> datetime:
    """The start of the bucket holding `at`, in UTC."""
    at = assume_utc(at)
    at = at.replace(minute=0, second=0, microsecond=0)
    return at.replace(hour=0) if bucket == "day" else at


def label(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _bucket_expr(engine: Engine, bucket: str) -> Any:
    if engine.dialect.name == "sqlite":  # stored as naive UTC text
        fmt = "%Y-%m-%dT%H:00:00Z" if bucket == "hour" else "%Y-%m-%dT00:00:00Z"
        return func.strftime(fmt, ledger.c.at)
    fmt = 'YYYY-MM-DD"T"HH24:00:00"Z"' if bucket == "hour" else 'YYYY-MM-DD"T"00:00:00"Z"'
    return func.to_char(func.date_trunc(bucket, func.timezone("UTC", ledger.c.at)), fmt)


def _group_expr(by: str) -> Any:
    return {
        "tenant": func.coalesce(tenants.c.name, "(no key)"),
        "key": func.coalesce(api_keys.c.prefix, "(no key)"),
        "model": ledger.c.model,
        "deployment": func.coalesce(ledger.c.deployment, "(none)"),
    }[by]


def _joined(*cols: Any) -> Any:
    return (select(*cols)
            .select_from(ledger.outerjoin(tenants, tenants.c.id == ledger.c.tenant_id)
                         .outerjoin(api_keys, api_keys.c.id == ledger.c.key_id)))


def _window(bucket: str, since: datetime | None, until: datetime | None) -> tuple[datetime, datetime]:
    step = BUCKETS[bucket]
    end = floor(until or datetime.now(UTC), bucket) + step
    start = floor(since, bucket) if since else end - step * (24 if bucket == "hour" else 30)
    if start >= end:
        raise InvalidParameters("since must be before until", param="since")
    if (end - start) / step > MAX_BUCKETS:
        raise InvalidParameters(f"at most {MAX_BUCKETS} buckets: shorten the range or use "
                                "bucket=day", param="since")
    return start, end


def series(engine: Engine, bucket: str = "hour", *, by: str | None = None,
           since: datetime | None = None, until: datetime | None = None,
           tenant: str | None = None, key: str | None = None, top: int = 8) -> dict[str, Any]:
    """Totals per bucket and group; money as decimal strings per currency."""
    if bucket not in BUCKETS:
        raise InvalidParameters("bucket must be hour or day", param="bucket")
    if by is not None and by not in GROUPS:
        raise InvalidParameters(f"group by one of: {', '.join(GROUPS)}", param="by")
    start, end = _window(bucket, since, until)
    t = _bucket_expr(engine, bucket).label("t")
    keys = [t, _group_expr(by).label("g")] if by else [t]
    failed = func.sum(case((ledger.c.status != "ok", 1), else_=0))
    q = _joined(
        *keys, ledger.c.currency, func.count().label("requests"), failed.label("errors"),
        *(func.sum(ledger.c[c]).label(c) for c in COUNTS[2:]),
        func.sum(ledger.c.cost_nano).label("revenue"),
        func.sum(ledger.c.upstream_cost_nano).label("upstream_cost"),
        func.sum(ledger.c.unbilled_nano).label("unbilled"),
    ).where(ledger.c.at >= start, ledger.c.at < end)
    if tenant is not None:
        q = q.where(tenants.c.name == tenant)
    if key is not None:
        q = q.where((ledger.c.key_id == key) | (api_keys.c.prefix == key))
    q = q.group_by(*keys, ledger.c.currency)
    with engine.connect() as c:
        rows = [r._mapping for r in c.execute(q)]
    return _shape(rows, bucket, by, start, end, top)


def _shape(rows: list[Any], bucket: str, by: str | None, start: datetime, end: datetime,
           top: int) -> dict[str, Any]:
    step = BUCKETS[bucket]
    labels = []
    at = start
    while at < end:
        labels.append(label(at))
        at += step
    index = {lab: i for i, lab in enumerate(labels)}
    def group_of(r: Any) -> str:
        return str(r["g"]) if by else "all"

    busiest: dict[str, int] = defaultdict(int)
    for r in rows:
        busiest[group_of(r)] += int(r["requests"])
    kept = sorted(busiest, key=lambda name: (-busiest[name], name))[:top]
    n = len(labels)
    counts: dict[str, dict[str, list[int]]] = {}
    money: dict[str, dict[str, dict[str, list[int]]]] = {}
    for r in rows:
        i = index.get(str(r["t"]))
        if i is None:
            continue
        group = group_of(r) if group_of(r) in kept else OTHER
        cs = counts.setdefault(group, {name: [0] * n for name in COUNTS})
        for name in COUNTS:
            cs[name][i] += int(r[name] or 0)
        if r["currency"] is not None:
            per = money.setdefault(group, {}).setdefault(
                r["currency"], {"revenue": [0] * n, "upstream_cost": [0] * n, "unbilled": [0] * n})
            for name in ("revenue", "upstream_cost", "unbilled"):
                per[name][i] += int(r[name] or 0)
    order = [g for g in kept if g in counts] + ([OTHER] if OTHER in counts else [])
    currencies = sorted({cur for m in money.values() for cur in m})
    return {
        "object": "usage.series", "bucket": bucket, "by": by, "since": label(start),
        "until": label(end), "buckets": labels, "currencies": currencies,
        "series": [_one(g, counts[g], money.get(g, {})) for g in order],
    }


def _one(group: str, counts: dict[str, list[int]], money: dict[str, dict[str, list[int]]]
         ) -> dict[str, Any]:
    prompt, hit = counts["prompt_tokens"], counts["cache_hit_tokens"]
    out: dict[str, Any] = {"group": group, **counts}
    out["cache_hit_rate"] = [round(h / p, 4) if p else None for h, p in zip(hit, prompt, strict=True)]
    out["money"] = {
        cur: {
            "revenue": [money_text(v) for v in m["revenue"]],
            "upstream_cost": [money_text(v) for v in m["upstream_cost"]],
            "margin": [money_text(r - u) for r, u in zip(m["revenue"], m["upstream_cost"], strict=True)],
            "unbilled": [money_text(v) for v in m["unbilled"]],
        }
        for cur, m in sorted(money.items())
    }
    return out


def top_errors(engine: Engine, *, since: datetime | None = None, until: datetime | None = None,
               limit: int = 10) -> list[dict[str, Any]]:
    """Requests that failed or broke off, grouped by model, status and error text."""
    error = func.coalesce(ledger.c.error, "(no message)").label("error")
    q = (select(ledger.c.model, ledger.c.status, error, func.count().label("n"),
                func.max(ledger.c.at).label("last_at"))
         .where(ledger.c.status != "ok"))
    if since is not None:
        q = q.where(ledger.c.at >= since)
    if until is not None:
        q = q.where(ledger.c.at < until)
    q = (q.group_by(ledger.c.model, ledger.c.status, error)
         .order_by(func.count().desc(), func.max(ledger.c.at).desc(), ledger.c.model,
                   ledger.c.status, error).limit(limit))
    with engine.connect() as c:
        return [{"model": r.model, "status": r.status, "error": r.error, "count": int(r.n),
                 "last_at": label(floor_seconds(r.last_at))} for r in c.execute(q)]


def floor_seconds(at: datetime) -> datetime:
    at = assume_utc(at)
    return at.replace(microsecond=0)
