"""The same ledger, keys and reports on the machine's PostgreSQL (127.0.0.1:5432)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import psycopg
import pytest
from sqlalchemy import Integer

from manxue.accounting import reports
from manxue.accounting.keys import KeyStore
from manxue.accounting.ledger import insert_rows
from manxue.testing.deepseek_emulator import Behavior
from tests.helpers import POSTGRES_ADMIN_DSN as ADMIN_DSN
from tests.helpers import postgres_database


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """One database for the module (tests/helpers.py: fails, saying why, without PostgreSQL)."""
    with postgres_database() as url:
        yield url


def test_gateway_bills_into_postgres(make_billing, pg_url, upstream):
    bill = make_billing(database_url=pg_url)
    key = bill.create_key(tenant="pg-tenant", balance="2")
    upstream.emu.default = Behavior(cache_hit_tokens=2)
    for _ in range(3):
        assert bill.chat(key["key"]).status_code == 200
    rows = bill.rows(tenant="pg-tenant")
    assert len(rows) == 3 and all(Decimal(r["cost"]) > 0 for r in rows)
    [day] = bill.admin.get("/admin/usage", params={"by": "day", "tenant": "pg-tenant"}).json()["data"]
    assert day["requests"] == 3 and day["day"] == datetime.now(UTC).strftime("%Y-%m-%d")
    listed = next(k for k in bill.admin.get("/admin/keys").json()["data"] if k["id"] == key["id"])
    assert Decimal(listed["balance"]) == Decimal(2) - sum(Decimal(r["cost"]) for r in rows)


def test_replay_is_idempotent_on_postgres(pg_url):
    from manxue.store.db import open_engine

    engine = open_engine(pg_url)
    store = KeyStore(engine)
    rec, _ = store.create("replay-tenant")
    row = {"request_id": f"req-{uuid.uuid4().hex}", "at": datetime.now(UTC).isoformat(),
           "tenant_id": rec.tenant_id, "key_id": rec.id, "model": "m", "deployment": "d",
           "stream": False, "status": "ok", "prompt_tokens": 5, "cache_hit_tokens": 0,
           "cache_miss_tokens": 5, "completion_tokens": 2, "reasoning_tokens": 0,
           "usage_source": "upstream", "price_list": None, "currency": None, "price_hit": None,
           "price_miss": None, "price_output": None, "cost_nano": 123, "upstream_cost_nano": 0,
           "latency_ms": 1, "ttft_ms": 1, "attempts": 1, "error": None}
    assert insert_rows(engine, [row]) == 1
    assert insert_rows(engine, [row, row]) == 0
    got = reports.usage_rows(engine, tenant="replay-tenant")
    assert len(got) == 1 and got[0]["cost"] == "0.000000123"


def test_flushed_rows_keep_their_utc_time_whatever_the_session_time_zone(pg_url):
    from sqlalchemy import select

    from manxue.accounting.ledger import LEDGER_COLUMNS, append_rows, ledger_time
    from manxue.store.db import open_engine
    from manxue.store.tables import ledger

    name = pg_url.rsplit("/", 1)[1]
    with psycopg.connect(ADMIN_DSN, autocommit=True) as c:
        c.execute(f"ALTER DATABASE \"{name}\" SET timezone = 'Asia/Shanghai'")
    engine = open_engine(pg_url)
    ts = 1_764_600_000.123456  # 2025-12-01 14:40:00.123456 UTC
    values = dict.fromkeys(LEDGER_COLUMNS)
    values.update(request_id=f"tz-{uuid.uuid4().hex}", at=ledger_time(ts), model="m", stream=True,
                  status="ok", prompt_tokens=1, cache_hit_tokens=0, cache_miss_tokens=1,
                  completion_tokens=1, reasoning_tokens=0, usage_source="upstream", cost_nano=7,
                  upstream_cost_nano=0, client_request_id="client-7", unbilled_nano=0)
    row = tuple(values[c] for c in LEDGER_COLUMNS)
    assert append_rows(engine, [row, row]) == 2  # the second is skipped by request id
    with engine.connect() as c:
        got = c.execute(select(ledger.c.at, ledger.c.client_request_id)
                        .where(ledger.c.request_id == values["request_id"])).all()
    assert len(got) == 1
    assert got[0].at == datetime.fromtimestamp(ts, UTC) and got[0].client_request_id == "client-7"


def test_a_batch_crossing_statement_chunks_lands_whole(pg_url):
    from sqlalchemy import func, select

    from manxue.accounting.ledger import LEDGER_COLUMNS, append_rows, ledger_time
    from manxue.store.db import open_engine
    from manxue.store.tables import ledger

    engine = open_engine(pg_url)
    run = uuid.uuid4().hex[:8]
    rows = []
    for i in range(300):  # 128 + 128 + 32 + 8 + 4 rows per INSERT
        values = dict.fromkeys(LEDGER_COLUMNS)
        values.update(request_id=f"chunk-{run}-{i}", at=ledger_time(1_764_600_000 + i), model="m",
                      stream=i % 2 == 0, status="ok", prompt_tokens=i, cache_hit_tokens=0,
                      cache_miss_tokens=i, completion_tokens=1, reasoning_tokens=0,
                      usage_source="upstream", cost_nano=i, upstream_cost_nano=0, unbilled_nano=0,
                      error=None if i % 3 else "it's \"quoted\"")
        rows.append(tuple(values[c] for c in LEDGER_COLUMNS))
    assert append_rows(engine, rows + rows[:3]) == 303
    with engine.connect() as c:
        mine = ledger.c.request_id.like(f"chunk-{run}-%")
        count, cost, streams = c.execute(select(func.count(), func.sum(ledger.c.cost_nano),
                                                func.sum(func.cast(ledger.c.stream, Integer)))
                                         .where(mine)).one()
        quoted = c.execute(select(func.count()).where(mine, ledger.c.error == "it's \"quoted\"")).scalar()
    assert (count, cost, streams, quoted) == (300, sum(range(300)), 150, 100)


def test_engine_hours_and_utc_days_on_postgres(pg_url):
    from manxue.accounting.fixed_costs import FixedCost
    from manxue.store.db import open_engine
    from tests.accounting.test_fixed_costs import row

    name = pg_url.rsplit("/", 1)[1]  # a server far from UTC: totals by day still use UTC days
    with psycopg.connect(ADMIN_DSN, autocommit=True) as c:
        c.execute(f"ALTER DATABASE \"{name}\" SET timezone = 'Asia/Shanghai'")
    engine = open_engine(pg_url)
    insert_rows(engine, [row("fx-a", "2027-01-01T22:00:00", "pg-gpu", 4_000_000_000),
                         row("fx-b", "2027-01-02T01:30:00", "pg-gpu", 3_000_000_000)])
    fixed = {"pg-gpu": FixedCost(Decimal("2.5"), "USD")}
    since, until = datetime(2027, 1, 1, 21, tzinfo=UTC), datetime(2027, 1, 2, 3, tzinfo=UTC)
    [dep] = [r for r in reports.summary(engine, "deployment", since=since, until=until, fixed=fixed)
             if r["deployment"] == "pg-gpu"]
    assert dep["fixed_cost"] == "15" and dep["margin"] == "-8" and dep["fixed_cost_hours"] == 6.0
    days = {r["day"]: r for r in reports.summary(engine, "day", since=since, until=until, fixed=fixed)}
    assert days["2027-01-01"]["fixed_cost"] == "7.5" and days["2027-01-02"]["fixed_cost"] == "7.5"
    assert days["2027-01-01"]["revenue"] == "4" and days["2027-01-02"]["revenue"] == "3"


def test_keys_for_one_new_tenant_created_at_once_on_postgres(pg_url):
    from concurrent.futures import ThreadPoolExecutor

    from manxue.accounting.keys import KeyStore
    from manxue.store.db import open_engine

    store = KeyStore(open_engine(pg_url))
    with ThreadPoolExecutor(8) as pool:  # each may find no tenant and insert it: one wins
        made = list(pool.map(lambda _: store.create("rush-tenant", balance=Decimal(1))[0], range(8)))
    assert len({r.id for r in made}) == 8 and len({r.tenant_id for r in made}) == 1
    assert sum(t["name"] == "rush-tenant" for t in store.tenants()) == 1
    # an expiry given at +08:00 is the same instant on PostgreSQL as on SQLite
    from datetime import timedelta, timezone

    when = datetime(2027, 1, 1, 8, 0, tzinfo=timezone(timedelta(hours=8)))
    rec = store.update(made[0].id, {"expires_at": when})
    assert rec.expires_at == when and rec.expires_at.utcoffset() == timedelta(0)


def test_inflated_usage_never_overdraws_with_postgres_and_redis(make_billing, pg_url, redis_url,
                                                                upstream):
    """The never-below-zero rule with the shared stores: keys in PostgreSQL, balances in Redis."""
    bill = make_billing(database_url=pg_url, redis_url=redis_url)
    upstream.emu.default = Behavior(completion_padding=50_000)
    key = bill.create_key(balance="0.001")
    codes = [bill.chat(key["key"], max_tokens=200).status_code for _ in range(8)]
    assert codes[0] == 200 and codes[-1] == 402
    rows = bill.rows(key=key["id"])
    assert len(rows) == codes.count(200) and all(Decimal(r["unbilled"]) > 0 for r in rows)
    [listed] = [k for k in bill.admin.get("/admin/keys").json()["data"] if k["id"] == key["id"]]
    assert Decimal(listed["balance"]) >= 0
