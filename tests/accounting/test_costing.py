"""The meter's integer costing gives exactly what the documented Decimal rule gives."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from manxue.accounting.money import Rates, cost_nano, to_nano
from manxue.pricing.units import TokenCounts, UnitPrices, cost

D = Decimal


def rule(hit: int, miss: int, out: int, prices: tuple[Decimal, Decimal, Decimal]) -> int:
    return to_nano(cost(TokenCounts(hit, miss, out), UnitPrices(*prices, "USD")))


def test_random_prices_and_counts_match_the_decimal_rule() -> None:
    rng = random.Random(20261201)
    for i in range(5000):
        prices = tuple(D(rng.randint(0, 10 ** rng.randint(1, 9))).scaleb(-rng.randint(0, 12))
                       for _ in range(3))
        if i % 4 == 0:  # resale lists: list price + 20%, unrounded
            prices = tuple(p * D("1.2") for p in prices)
        counts = [rng.randint(0, 10 ** rng.randint(0, 13)) for _ in range(3)]
        assert Rates.of(*prices).cost_nano(*counts) == rule(*counts, prices), (prices, counts)


@pytest.mark.parametrize(("hit", "expected"), [(1, 0), (3, 20), (5, 20), (7, 40)])
def test_ties_round_half_to_even_at_1e_8(hit: int, expected: int) -> None:
    # 0.005 per 1M tokens: one token costs 5e-9, exactly half of the 1e-8 quantum
    assert Rates.of(D("0.005"), D(0), D(0)).cost_nano(hit, 0, 0) == expected
    assert rule(hit, 0, 0, (D("0.005"), D(0), D(0))) == expected


def test_whole_and_exponent_prices() -> None:
    assert Rates.of(D(2), D("1E+1"), D("0")).cost_nano(1_000_000, 1_000_000, 7) == to_nano(12)
    assert cost_nano(1000, 2345, 678, D("0.14"), D("0.55"), D("2.19")) == to_nano(D("0.00291457"))


def test_huge_counts_stay_exact() -> None:
    prices = (D("0.14"), D("0.55"), D("2.19"))
    counts = (10**15 + 1, 10**15 + 3, 10**15 + 7)
    assert Rates.of(*prices).cost_nano(*counts) == rule(*counts, prices)
