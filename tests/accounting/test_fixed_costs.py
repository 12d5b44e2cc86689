"""GPU-hour costs of self-hosted engines in margin reports, on real SQLite: by deployment and
by day, bounded by the report's window or by a deployment's own traffic."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from manxue.accounting.fixed_costs import FixedCost, accrued_nano, fixed_costs
from manxue.accounting.ledger import insert_rows
from manxue.accounting.reports import summary
from manxue.cli import app
from manxue.settings import DeploymentSettings, load_settings
from manxue.store.db import open_engine

D = Decimal
GPU = {"gpu-box": FixedCost(D("2.5"), "USD")}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def row(request_id: str, when: str, deployment: str, cost_nano: int, upstream_nano: int = 0,
        currency: str = "USD") -> dict[str, Any]:
    return {"request_id": request_id, "at": at(when).isoformat(), "tenant_id": None,
            "key_id": None, "model": "deepseek-v4-pro", "deployment": deployment,
            "stream": False, "status": "ok", "prompt_tokens": 10, "cache_hit_tokens": 4,
            "cache_miss_tokens": 6, "completion_tokens": 3, "reasoning_tokens": 0,
            "usage_source": "upstream", "price_list": "x", "currency": currency,
            "price_hit": "1", "price_miss": "2", "price_output": "3", "cost_nano": cost_nano,
            "upstream_cost_nano": upstream_nano, "latency_ms": 3, "ttft_ms": 1, "attempts": 1,
            "error": None}


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    e = open_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    insert_rows(e, [
        row("a", "2026-11-30T22:00:00", "gpu-box", 4_000_000_000),        # 4 USD
        row("b", "2026-12-01T01:30:00", "gpu-box", 3_000_000_000),        # 3 USD
        row("c", "2026-12-01T01:00:00", "cloud", 2_000_000_000, 1_500_000_000),
    ])
    return e


def by(rows: list[dict[str, Any]], dim: str) -> dict[str, dict[str, Any]]:
    return {r[dim]: r for r in rows}


def test_the_window_of_the_report_is_charged(engine: Engine) -> None:
    got = by(summary(engine, "deployment", since=at("2026-11-30T21:00:00"),
                     until=at("2026-12-01T03:00:00"), fixed=GPU), "deployment")
    gpu = got["gpu-box"]
    assert gpu["fixed_cost_hours"] == 6.0 and gpu["fixed_cost"] == "15"      # 6 h × 2.5
    assert gpu["revenue"] == "7" and gpu["upstream_cost"] == "0"
    assert gpu["margin"] == "-8" and gpu["cost_profit_margin"] == round(-8 / 15, 4)
    cloud = got["cloud"]  # per-token cost only
    assert cloud["fixed_cost"] == "0" and cloud["margin"] == "0.5"
    assert cloud["cost_profit_margin"] == round(0.5 / 1.5, 4)


def test_an_open_window_runs_from_the_first_to_the_last_request(engine: Engine) -> None:
    gpu = by(summary(engine, "deployment", fixed=GPU), "deployment")["gpu-box"]
    assert gpu["fixed_cost_hours"] == 3.5 and gpu["fixed_cost"] == "8.75"
    assert gpu["margin"] == "-1.75"


def test_by_day_splits_at_utc_midnight_and_charges_idle_days(engine: Engine) -> None:
    got = by(summary(engine, "day", since=at("2026-11-30T20:00:00"),
                     until=at("2026-12-02T02:00:00"), fixed=GPU), "day")
    assert got["2026-11-30"]["fixed_cost_hours"] == 4.0 and got["2026-11-30"]["fixed_cost"] == "10"
    assert got["2026-12-01"]["fixed_cost_hours"] == 24.0 and got["2026-12-01"]["fixed_cost"] == "60"
    idle = got["2026-12-02"]  # no request that day, but the engine ran
    assert idle["requests"] == 0 and idle["fixed_cost"] == "5" and idle["margin"] == "-5"
    assert got["2026-12-01"]["revenue"] == "5"  # b (3) + c (2)
    assert got["2026-12-01"]["upstream_cost"] == "1.5"


def test_reports_for_one_tenant_or_by_model_carry_no_fixed_cost(engine: Engine) -> None:
    [m] = summary(engine, "model", fixed=GPU)
    assert "fixed_cost" not in m and m["margin"] == "7.5"
    rows = summary(engine, "deployment", tenant="nobody", fixed=GPU)
    assert rows == []


def test_a_fixed_cost_in_another_currency_gets_its_own_line(engine: Engine) -> None:
    rows = summary(engine, "deployment", fixed={"gpu-box": FixedCost(D("18"), "CNY")})
    lines = {(r["deployment"], r["currency"]): r for r in rows}
    assert lines[("gpu-box", "USD")]["fixed_cost"] == "0"
    cny = lines[("gpu-box", "CNY")]
    assert cny["requests"] == 0 and cny["fixed_cost"] == "63" and cny["margin"] == "-63"


def test_deepseeks_published_day_comes_out_at_545_percent(tmp_path: Path) -> None:
    # 2025-02-27/28: $87,072 of H800 hours and $562,027 of revenue at list prices in 24 h
    e = open_engine(f"sqlite:///{tmp_path / 'day.db'}")
    insert_rows(e, [row("day", "2025-02-27T12:00:00", "v3-r1-fleet", 562_027 * 10**9)])
    [d] = summary(e, "deployment", since=at("2025-02-27T00:00:00"), until=at("2025-02-28T00:00:00"),
                  fixed={"v3-r1-fleet": FixedCost(D(87_072) / 24, "USD")})
    assert d["fixed_cost"] == "87072" and round(d["cost_profit_margin"], 2) == 5.45  # 545%


def test_rounding_is_once_and_half_to_even() -> None:
    cost = FixedCost(D("0.000000001"), "USD")  # a nano-unit per hour
    assert accrued_nano(cost, at("2026-01-01T00:00:00"), at("2026-01-01T00:30:00")) == 0  # 0.5 → 0
    assert accrued_nano(cost, at("2026-01-01T00:00:00"), at("2026-01-01T01:30:00")) == 2  # 1.5 → 2
    assert accrued_nano(cost, at("2026-01-01T01:00:00"), at("2026-01-01T00:00:00")) == 0


def test_settings_read_the_hourly_cost_exactly() -> None:
    d = DeploymentSettings.model_validate({"name": "box", "model": "m", "kind": "local",
                                           "path": "x.gguf", "cost_per_hour": 2.1})
    assert d.cost_per_hour == D("2.1")
    assert fixed_costs([d], "CNY") == {"box": FixedCost(D("2.1"), "CNY")}


def test_the_cli_reports_a_configured_engine(tmp_path: Path) -> None:
    cfg = tmp_path / "manxue.toml"
    cfg.write_text(f'data_dir = "{tmp_path / "data"}"\n'
                   '[[deployments]]\nname = "gpu-box"\nmodel = "deepseek-v4-pro"\nkind = "local"\n'
                   'path = "model.gguf"\ncost_per_hour = 2.5\n')
    insert_rows(open_engine(load_settings(cfg).resolved_database_url()),
                [row("x", "2026-12-01T00:00:00", "gpu-box", 10**9),
                 row("y", "2026-12-01T02:00:00", "gpu-box", 10**9)])
    r = CliRunner().invoke(app, ["usage", "--by", "deployment", "--json", "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    [d] = json.loads(r.stdout)
    assert d["fixed_cost"] == "5" and d["margin"] == "-3"
    r = CliRunner().invoke(app, ["usage", "--by", "deployment", "--config", str(cfg)])
    assert r.exit_code == 0 and re.search(r"\s-3\s", r.stdout) and "fixed" in r.stdout


def test_the_admin_api_charges_engines_and_meters_deployments_added_while_serving(
        make_billing: Any, upstream: Any) -> None:
    from tests.helpers import deployment

    bill = make_billing([deployment(upstream, "primary", cost_per_hour="3.6")])
    key = bill.create_key()["key"]
    start = datetime.now(UTC).replace(microsecond=0)
    assert bill.chat(key).status_code == 200
    window = {"by": "deployment", "since": start.isoformat(),
              "until": (start + timedelta(hours=1)).isoformat()}
    bill.flush()
    [primary] = bill.admin.get("/admin/usage", params=window).json()["data"]
    assert primary["fixed_cost"] == "3.6" and primary["fixed_cost_hours"] == 1.0
    assert Decimal(primary["margin"]) == Decimal(primary["revenue"]) - Decimal("3.6")

    # a deployment added while serving with a cost list it does not know is refused whole
    bad = deployment(upstream, "rented", cost_price_list="no-such-list")
    r = bill.admin.post("/admin/deployments", json=bad)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_deployment"
    assert "manxue prices" in r.json()["error"]["message"]
    wrong = deployment(upstream, "rented", cost_price_list="openai-2025-03")
    r = bill.admin.post("/admin/deployments", json=wrong)
    assert r.status_code == 422 and "has no price for deepseek-chat" in r.json()["error"]["message"]
    names = [d["name"] for d in bill.admin.get("/admin/deployments").json()["data"]]
    assert names == ["primary"]

    # one it knows is metered: its upstream cost lands in the ledger and the margin
    good = deployment(upstream, "rented", cost_price_list="upstream-cost")
    assert bill.admin.post("/admin/deployments", json=good).status_code == 201
    assert bill.admin.delete("/admin/deployments/primary").status_code == 200
    assert bill.chat(key).status_code == 200
    [row] = [r for r in bill.rows() if r["deployment"] == "rented"]
    assert Decimal(row["upstream_cost"]) > 0
    lines = by(bill.admin.get("/admin/usage", params={"by": "deployment"}).json()["data"],
               "deployment")
    assert lines["rented"]["upstream_cost"] == row["upstream_cost"]
    assert "fixed_cost" in lines["rented"] and lines["rented"]["fixed_cost"] == "0"


def test_a_cost_list_that_never_prices_the_model_is_refused(tmp_path: Path) -> None:
    from manxue.accounting.prices import PriceBook
    from manxue.errors import ConfigError
    from manxue.settings import settings_from_dict

    def book(cost_list: str, upstream_model: str = "deepseek-chat") -> PriceBook:
        return PriceBook.from_settings(settings_from_dict({"deployments": [
            {"name": "up", "model": "chat", "base_url": "http://127.0.0.1:9",
             "upstream_model": upstream_model, "cost_price_list": cost_list}]}))

    with pytest.raises(ConfigError, match="'up': cost_price_list 'openai-2025-03' has no price"):
        book("openai-2025-03")
    with pytest.raises(ConfigError, match="unknown cost_price_list 'nope'"):
        book("nope")
    assert book("deepseek-history").deployments["up"].cost_price_list == "deepseek-history"


def test_a_cost_list_with_no_price_in_force_says_so_once(caplog: pytest.LogCaptureFixture) -> None:
    from manxue.accounting.prices import PriceBook
    from manxue.protocol.usage import Usage
    from manxue.settings import settings_from_dict

    b = PriceBook.from_settings(settings_from_dict({"deployments": [
        {"name": "up", "model": "deepseek-chat", "base_url": "http://127.0.0.1:9",
         "cost_price_list": "deepseek-v3-2025-02"}]}))  # ended 2025-09-05
    now = datetime(2026, 12, 1, tzinfo=UTC).timestamp()
    usage = Usage(10, 5, 0, 10, 0)
    assert b.upstream_cost("up", "deepseek-chat", usage, now) == 0
    assert b.upstream_cost("up", "deepseek-chat", usage, now + 60) == 0
    warned = [r for r in caplog.records if "has no price for 'deepseek-chat' in force" in r.message]
    assert len(warned) == 1 and "manxue prices deepseek-v3-2025-02" in warned[0].message
    then = datetime(2025, 3, 1, 12, tzinfo=UTC).timestamp()
    assert b.upstream_cost("up", "deepseek-chat", usage, then) > 0


def test_a_cost_list_with_no_price_in_force_is_named_at_start(
        make_billing: Any, upstream: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Reported when the gateway starts (and when such a deployment is added), not at its
    first request: each deployment whose cost list prices its model only in the past once."""
    import logging

    from tests.helpers import deployment

    def warned() -> list[str]:
        return [r.getMessage() for r in caplog.records
                if "in force" in r.getMessage() and r.name == "manxue.meter"]

    ended = "deepseek-v3-2025-02"  # priced deepseek-chat until 2025-09-05
    with caplog.at_level(logging.WARNING, logger="manxue.meter"):
        bill = make_billing([deployment(upstream, "retired", cost_price_list=ended),
                             deployment(upstream, "current", cost_price_list="upstream-cost",
                                        priority=1)])
        [line] = warned()  # before any request; the deployment priced today is not named
        assert line.startswith("deployment 'retired': cost_price_list 'deepseek-v3-2025-02' "
                               "has no price for 'deepseek-chat' in force at ")
        assert "upstream cost is recorded as 0" in line and f"manxue prices {ended}" in line

        key = bill.create_key()["key"]
        assert bill.chat(key).status_code == 200  # answered by 'retired': said once, at start
        [row] = bill.rows()
        assert row["deployment"] == "retired" and row["upstream_cost"] == "0"
        assert len(warned()) == 1

        added = deployment(upstream, "late", cost_price_list=ended, priority=2)
        assert bill.admin.post("/admin/deployments", json=added).status_code == 201
        assert len(warned()) == 2 and warned()[1].startswith("deployment 'late': ")
