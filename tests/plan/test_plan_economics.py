"""Cost per 1M tokens, margins, and the pure margin function the ledger will feed."""

from __future__ import annotations

from decimal import Decimal

import pytest

from manxue.errors import InvalidParameters
from manxue.plan.catalog import builtin_catalog
from manxue.plan.economics import (
    blended_output_capacity,
    cost_prices,
    ledger_margin,
    traffic_margin,
    usd_per_million,
)
from manxue.plan.report import PlanQuery, build_report
from manxue.pricing import TokenCounts, UnitPrices

D = Decimal


def test_cost_per_million_tokens() -> None:
    # 16 GPUs × $2 = $32/h; 10,000 tok/s = 36M tok/h → $0.8889 per 1M
    assert usd_per_million(10_000, 16, D(2)) == D("0.88888889")
    assert usd_per_million(10_000, 16, D(2), utilisation=0.5) == D("1.77777778")
    assert usd_per_million(0, 16, D(2)) is None
    with pytest.raises(InvalidParameters):
        usd_per_million(1, 1, D(2), utilisation=0)


def test_cost_side_as_a_price_sheet() -> None:
    sheet = cost_prices(1e9, 100_000, 10_000, 8, D(2))
    assert sheet is not None and sheet.currency == "USD"
    assert sheet.output == D("0.44444444") and sheet.miss == D("0.04444444")


def test_traffic_margin_with_fixed_cost_and_with_a_cost_sheet() -> None:
    r1 = UnitPrices(D("0.14"), D("0.55"), D("2.19"), "USD")
    usage = TokenCounts(342 * 10**9, 266 * 10**9, 168 * 10**9)
    m = traffic_margin(usage, r1, D(87_072))
    assert (m.revenue, m.cost, m.profit) == (D(562_100), D(87_072), D(475_028))
    upstream = UnitPrices(D("0.07"), D("0.27"), D("1.10"), "USD")   # reselling V3-priced tokens
    m2 = traffic_margin(TokenCounts(1_000_000, 1_000_000, 1_000_000), r1, upstream)
    assert (m2.revenue, m2.cost) == (D("2.88"), D("1.44"))
    assert m2.cost_profit_margin == D(1)
    with pytest.raises(InvalidParameters, match="CNY"):
        traffic_margin(usage, r1, UnitPrices(D(1), D(4), D(16), "CNY"))


def test_blended_capacity_splits_gpu_time() -> None:
    # 1 output token per second of decode and 2 input (half hits) at 4/s miss, free hits
    assert blended_output_capacity(float("inf"), 4.0, 1.0, 2.0, 0.5) == pytest.approx(1 / 1.25)


def test_plan_report_has_the_required_keys_and_consistent_costs() -> None:
    r = build_report(PlanQuery("deepseek-r1", "h800", 16, "fp8", price_list="deepseek-r1-2025-02"),
                     builtin_catalog())
    for key in ("kv_bytes_per_token", "weights_bytes", "fits", "max_concurrent_sequences",
                "decode_tokens_per_s", "prefill_tokens_per_s", "usd_per_million_output_tokens"):
        assert key in r
    per_hour = D(16 * 2)
    expected = per_hour * 1_000_000 / (D(repr(r["decode_tokens_per_s"])).quantize(D("0.000001")) * 3600)
    assert r["usd_per_million_output_tokens"] == expected.quantize(D("0.00000001"))
    p = r["price_list"]
    assert p["model"] == "deepseek-reasoner" and p["unit_prices"]["output"] == "2.19"
    assert p["cost_profit_margin_at_capacity"] > 0


def test_plan_report_when_nothing_fits() -> None:
    r = build_report(PlanQuery("deepseek-r1", "h800", 8, "fp8", price_list="deepseek-r1-2025-02"),
                     builtin_catalog())
    assert r["fits"] is False and r["decode_tokens_per_s"] == 0
    assert r["usd_per_million_output_tokens"] is None
    assert "does not fit" in r["price_list"]["note"]


def test_cny_list_is_refused_for_usd_gpu_hours() -> None:
    with pytest.raises(InvalidParameters, match="CNY"):
        build_report(PlanQuery("deepseek-r1", "h800", 16, price_list="deepseek-r1-2025-02-cny"),
                     builtin_catalog())


def test_ledger_margin_from_usage_summary_rows() -> None:
    rows = [  # the shape of `manxue usage --by model --json`
        {"model": "deepseek-reasoner", "currency": "USD", "cache_hit_tokens": 3_000_000,
         "cache_miss_tokens": 1_000_000, "completion_tokens": 2_000_000, "revenue": "5.35"},
        {"model": "deepseek-chat", "currency": "USD", "cache_hit_tokens": 0,
         "cache_miss_tokens": 1_000_000, "completion_tokens": 1_000_000, "revenue": "1.37"},
    ]
    sheet = UnitPrices(D("0.01"), D("0.10"), D("0.50"), "USD")   # a plan's cost per 1M tokens
    m = ledger_margin(rows, sheet)
    assert (m.revenue, m.cost) == (D("6.72"), D("1.73"))          # 0.03 + 0.2 + 1.5
    assert m.cost_profit_margin == D("2.88439306")                 # 4.99 / 1.73
    assert ledger_margin(rows, D(2)).profit == D("4.72")
    with pytest.raises(InvalidParameters, match="mix currencies"):
        ledger_margin([*rows, {**rows[0], "currency": "CNY"}], D(1))
