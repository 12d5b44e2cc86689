"""DeepSeek's published day: $87,072 cost, ≈ $562,027 revenue at R1 prices, 545% margin."""

from __future__ import annotations

from decimal import Decimal

from manxue.plan.day import deepseek_day, implied_hit_tokens, published_day
from manxue.pricing import TokenCounts, UnitPrices, cost

D = Decimal
DAY = deepseek_day()


def test_cost_is_87072() -> None:
    assert DAY["cost_usd"] == D("226.75") * 8 * 24 * 2 == D(87_072)
    assert DAY["gpu_hours"] == D(43_536)


def test_revenue_at_r1_prices_is_562027() -> None:
    assert DAY["price_list"] == "deepseek-r1-2025-02"
    assert DAY["unit_prices_usd"] == {"hit": "0.14", "miss": "0.55", "output": "2.19",
                                      "currency": "USD"}
    assert DAY["revenue_usd"] == D("562027.00")


def test_margin_is_545_percent() -> None:
    assert DAY["cost_profit_margin"].quantize(D("0.01")) == D("5.45")
    assert DAY["cost_profit_margin_percent"] == 545
    assert DAY["profit_usd"] == D(562_027) - D(87_072) == D(474_955)


def test_rounded_published_counts_give_562100_within_0_02_percent() -> None:
    r1 = UnitPrices(D("0.14"), D("0.55"), D("2.19"), "USD")
    rounded = cost(TokenCounts(342 * 10**9, 266 * 10**9, 168 * 10**9), r1)
    assert rounded == D(562_100)
    assert DAY["reconciliation"]["revenue_usd_at_published_rounded_counts"] == rounded
    assert abs(rounded - D(562_027)) / D(562_027) < D("0.0002")


def test_implied_hit_count_is_consistent_with_the_published_rounding() -> None:
    hits = DAY["tokens"]["cache_hit"]
    assert hits == 342_178_048_780
    assert round(hits / 1e9) == 342                       # "342B"
    assert round(hits / 608e9 * 100, 1) == 56.3           # "(56.3%)"
    assert DAY["tokens"]["cache_hit"] + DAY["tokens"]["cache_miss"] == 608 * 10**9
    assert DAY["tokens"]["output"] == 168 * 10**9


def test_the_published_figure_ignores_the_offpeak_discount() -> None:
    # R1 was 75% off 16:30–00:30 UTC that day; priced with it, even traffic would bring ~$421k.
    off = DAY["reconciliation"]["revenue_usd_if_offpeak_discount_applied_to_flat_traffic"]
    assert D(400_000) < off < D(450_000)


def test_implied_hits_formula() -> None:
    r1 = UnitPrices(D("0.14"), D("0.55"), D("2.19"), "USD")
    assert implied_hit_tokens(608 * 10**9, 168 * 10**9, r1, D(562_100)) == 342 * 10**9
    assert published_day().nodes_peak == 278
