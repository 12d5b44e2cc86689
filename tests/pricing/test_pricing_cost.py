"""Cost arithmetic is exact in Decimal; one documented rounding; markups."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest

from manxue.errors import InvalidParameters
from manxue.pricing import (
    MONEY_QUANTUM,
    TokenCounts,
    UnitPrices,
    builtin_price_lists,
    cost,
    markup,
    markup_prices,
    price_at,
)
from manxue.pricing.units import raw_cost

D = Decimal
R1 = UnitPrices(D("0.14"), D("0.55"), D("2.19"), "USD")


def test_cost_of_one_request_is_exact() -> None:
    # 1,000 hit + 2,345 miss + 678 output at R1 USD prices
    got = cost(TokenCounts(1000, 2345, 678), R1)
    assert got == D("0.00291457")  # (140 + 1,289.75 + 1,484.82) / 1,000,000
    assert got == (D(1000) * D("0.14") + D(2345) * D("0.55") + D(678) * D("2.19")) / 1_000_000


def test_cost_of_deepseek_day_at_rounded_counts() -> None:
    usage = TokenCounts(342_000_000_000, 266_000_000_000, 168_000_000_000)
    assert cost(usage, R1) == D("562100")


def test_rounding_is_half_even_at_1e_8() -> None:
    one = UnitPrices(D("0.005"), D(0), D(0), "USD")      # 1 token → 0.000000005 exactly
    assert raw_cost(TokenCounts(hit=1), one) == D("5E-9")
    assert cost(TokenCounts(hit=1), one) == D("0E-8")          # half to even: down to 0
    assert cost(TokenCounts(hit=3), one) == D("0.00000002")    # 1.5e-8 → 2e-8
    assert cost(TokenCounts(hit=5), one) == D("0.00000002")    # 2.5e-8 → 2e-8
    assert cost(TokenCounts(hit=1), R1).as_tuple().exponent == MONEY_QUANTUM.as_tuple().exponent


def test_cost_is_additive_before_rounding_and_reproducible() -> None:
    a, b = TokenCounts(10, 20, 30), TokenCounts(1, 2, 3)
    assert raw_cost(a + b, R1) == raw_cost(a, R1) + raw_cost(b, R1)
    assert cost(a, R1) == cost(TokenCounts(10, 20, 30), R1)


def test_huge_counts_stay_exact() -> None:
    big = TokenCounts(10**15 + 1, 10**15 + 3, 10**15 + 7)
    expected = (D(10**15 + 1) * D("0.14") + D(10**15 + 3) * D("0.55")
                + D(10**15 + 7) * D("2.19")) / D(10**6)
    assert cost(big, R1) == expected.quantize(MONEY_QUANTUM)


def test_markup_20_percent() -> None:
    plus = markup_prices(R1, D(20))
    assert (plus.hit, plus.miss, plus.output) == (D("0.168"), D("0.660"), D("2.628"))
    lst = markup(builtin_price_lists()["deepseek-r1-2025-02"], D(20), "acme-r1")
    when = datetime.fromisoformat("2025-03-03T20:00:00Z")     # off-peak explicit prices scale too
    assert price_at(lst, "deepseek-reasoner", when).output == D("0.55") * D("1.2")
    assert lst.id == "acme-r1" and lst.currency == "USD"


def test_markup_keeps_multiplier_windows_relative() -> None:
    lst = markup(builtin_price_lists()["deepseek-v3-2025-02"], D(50), "v3-plus-half")
    off = price_at(lst, "deepseek-chat", datetime.fromisoformat("2025-03-03T20:00:00Z"))
    assert off.output == D("1.10") * D("1.5") * D("0.5")


@pytest.mark.parametrize("bad", [TokenCounts, UnitPrices])
def test_invalid_values_are_refused(bad: type) -> None:
    with pytest.raises(InvalidParameters):
        if bad is TokenCounts:
            TokenCounts(-1, 0, 0)
        else:
            UnitPrices(D("-1"), D(0), D(0), "USD")
    with pytest.raises(InvalidParameters):
        markup_prices(R1, D(-100))
