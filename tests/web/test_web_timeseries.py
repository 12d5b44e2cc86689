"""Hourly and daily ledger totals and top errors (manxue.accounting.timeseries) on SQLite and
on the machine's PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from manxue.accounting import timeseries
from manxue.accounting.keys import KeyStore
from manxue.accounting.ledger import insert_rows
from manxue.errors import InvalidParameters
from manxue.store.db import open_engine
from tests.helpers import postgres_database

NOW = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        eng = open_engine(f"sqlite:///{tmp_path / 'ts.db'}")
        yield eng
        eng.dispose()
        return
    with postgres_database("manxue_ts") as url:  # fails, saying why, without PostgreSQL
        eng = open_engine(url)
        yield eng
        eng.dispose()


def _row(at: datetime, model: str, key: Any, *, status: str = "ok", currency: str | None = "USD",
         cost: int = 1000, upstream: int = 400, hit: int = 2, miss: int = 8,
         error: str | None = None) -> dict[str, Any]:
    return {"request_id": f"r-{uuid.uuid4().hex}", "at": at, "tenant_id": key.tenant_id,
            "key_id": key.id, "model": model, "deployment": f"dep-{model}", "stream": True,
            "status": status, "prompt_tokens": hit + miss, "cache_hit_tokens": hit,
            "cache_miss_tokens": miss, "completion_tokens": 5, "reasoning_tokens": 1,
            "usage_source": "upstream", "price_list": "p" if currency else None,
            "currency": currency, "price_hit": None, "price_miss": None, "price_output": None,
            "cost_nano": cost, "upstream_cost_nano": upstream, "latency_ms": 10, "ttft_ms": 5,
            "attempts": 1, "error": error}


def test_series_and_top_errors(engine: Engine) -> None:
    store = KeyStore(engine)
    acme, _ = store.create("acme")
    globex, _ = store.create("globex")
    two_hours_ago = NOW - timedelta(hours=2)
    insert_rows(engine, [
        _row(two_hours_ago, "a", acme),
        _row(two_hours_ago + timedelta(minutes=5), "a", acme, hit=0, miss=10),
        _row(two_hours_ago, "b", globex, currency="EUR", cost=7000, upstream=0),
        _row(NOW, "a", globex, status="error", cost=0, upstream=0, hit=0, miss=0, currency=None,
             error="model 'a' is busy"),
        _row(NOW, "c", acme, status="incomplete", error=None),
        _row(NOW - timedelta(days=3), "a", acme),  # outside the last 24 hours
    ])

    s = timeseries.series(engine, "hour", until=NOW)
    assert len(s["buckets"]) == 24 and s["buckets"][-1] == NOW.strftime("%Y-%m-%dT%H:00:00Z")
    assert s["currencies"] == ["EUR", "USD"]
    [total] = s["series"]
    assert total["group"] == "all"
    assert total["requests"][-3] == 3 and total["requests"][-1] == 2 and sum(total["requests"]) == 5
    assert total["errors"][-1] == 2 and total["errors"][-3] == 0
    assert total["prompt_tokens"][-3] == 30 and total["cache_hit_tokens"][-3] == 4
    assert total["cache_hit_rate"][-3] == round(4 / 30, 4) and total["cache_hit_rate"][0] is None
    assert total["money"]["USD"]["revenue"][-3] == "0.000002"
    assert total["money"]["USD"]["margin"][-3] == "0.0000012"
    assert total["money"]["EUR"]["revenue"][-3] == "0.000007"

    by_model = timeseries.series(engine, "hour", by="model", until=NOW)
    assert [g["group"] for g in by_model["series"]] == ["a", "b", "c"]
    top1 = timeseries.series(engine, "hour", by="model", until=NOW, top=1)
    assert [g["group"] for g in top1["series"]] == ["a", timeseries.OTHER]
    assert top1["series"][1]["requests"][-1] == 1 and top1["series"][1]["requests"][-3] == 1
    by_tenant = timeseries.series(engine, "hour", by="tenant", until=NOW, tenant="globex")
    assert [g["group"] for g in by_tenant["series"]] == ["globex"]

    days = timeseries.series(engine, "day", until=NOW)
    assert len(days["buckets"]) == 30 and sum(days["series"][0]["requests"]) == 6

    errors = timeseries.top_errors(engine, since=NOW - timedelta(days=1))
    assert [(e["model"], e["status"], e["error"], e["count"]) for e in errors] == [
        ("a", "error", "model 'a' is busy", 1), ("c", "incomplete", "(no message)", 1)]


def test_series_refuses_bad_arguments(engine: Engine) -> None:
    with pytest.raises(InvalidParameters):
        timeseries.series(engine, "week")
    with pytest.raises(InvalidParameters):
        timeseries.series(engine, "hour", by="colour")
    with pytest.raises(InvalidParameters):
        timeseries.series(engine, "hour", since=NOW - timedelta(days=400), until=NOW)
    with pytest.raises(InvalidParameters):
        timeseries.series(engine, "hour", since=NOW, until=NOW - timedelta(days=1))
