"""Economics: what a token costs on rented GPUs, and the margin a price list yields.

    cost per 1M tokens = gpus × gpu_hour / (tokens_per_s × 3600 × utilisation) × 1e6

Each token class (cache-hit input, cache-miss input, output) is costed as if the GPUs did
only that work, so the three together are a price sheet on the cost side (`UnitPrices`).
The cost-profit margin is (revenue − cost) / cost (DeepSeek's definition: 5.45 = 545%).
Money is Decimal; throughputs are floats and enter the money arithmetic once, at 1e-6 tok/s.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from manxue.errors import InvalidParameters
from manxue.pricing import TokenCounts, UnitPrices
from manxue.pricing.units import raw_cost, round_money

HOUR = 3600
MILLION = Decimal(1_000_000)


def _dec(x: float) -> Decimal:
    return Decimal(repr(x)).quantize(Decimal("0.000001"))


def usd_per_million(tokens_per_s: float, gpus: int, gpu_hour: Decimal,
                    utilisation: float = 1.0) -> Decimal | None:
    """Cost of 1M tokens at a throughput; None when nothing is produced."""
    if not 0 < utilisation <= 1:
        raise InvalidParameters("utilisation must be in (0, 1]", param="utilisation")
    if gpu_hour < 0:
        raise InvalidParameters("gpu_hour must be >= 0", param="gpu_hour")
    if tokens_per_s <= 0 or tokens_per_s == float("inf"):
        return None if tokens_per_s <= 0 else Decimal(0)
    per_hour = _dec(tokens_per_s) * HOUR * _dec(utilisation)
    return round_money(gpus * gpu_hour * MILLION / per_hour)


def cost_prices(hit_tps: float, miss_tps: float, output_tps: float, gpus: int, gpu_hour: Decimal,
                utilisation: float = 1.0) -> UnitPrices | None:
    """The cost side as a price sheet (USD per 1M tokens), or None when nothing fits."""
    parts = [usd_per_million(t, gpus, gpu_hour, utilisation) for t in (hit_tps, miss_tps, output_tps)]
    if any(p is None for p in parts):
        return None
    hit, miss, out = (p if p is not None else Decimal(0) for p in parts)
    return UnitPrices(hit, miss, out, "USD")


@dataclass(frozen=True, slots=True)
class Margin:
    revenue: Decimal
    cost: Decimal
    currency: str

    @property
    def profit(self) -> Decimal:
        return self.revenue - self.cost

    @property
    def cost_profit_margin(self) -> Decimal | None:
        """(revenue − cost) / cost; None when cost is zero."""
        return round_money(self.profit / self.cost) if self.cost else None

    def as_dict(self) -> dict[str, object]:
        return {"revenue": self.revenue, "cost": self.cost, "profit": self.profit,
                "cost_profit_margin": self.cost_profit_margin, "currency": self.currency}


def traffic_margin(usage: TokenCounts, revenue_prices: UnitPrices,
                   cost_side: UnitPrices | Decimal) -> Margin:
    """Margin of aggregated traffic: revenue at a price list, cost at a cost sheet or a fixed
    amount (e.g. GPU-hours × price). This is the hook the ledger's aggregates feed."""
    revenue = round_money(raw_cost(usage, revenue_prices))
    if isinstance(cost_side, UnitPrices):
        if cost_side.currency != revenue_prices.currency:
            raise InvalidParameters(f"revenue is in {revenue_prices.currency}, cost in "
                                    f"{cost_side.currency}; convert one first")
        cost = round_money(raw_cost(usage, cost_side))
    else:
        cost = round_money(cost_side)
    return Margin(revenue, cost, revenue_prices.currency)


def ledger_margin(rows: Iterable[Mapping[str, Any]], cost_side: UnitPrices | Decimal) -> Margin:
    """Margin of the traffic in ledger totals (the rows of `manxue usage --by … --json`):
    revenue as the ledger recorded it, cost at `cost_side` (a plan's cost sheet, an upstream's
    price list, or a fixed amount such as GPU-hours × price). All rows in one currency."""
    usage, revenue, currencies = TokenCounts(), Decimal(0), set()
    for r in rows:
        usage = usage + TokenCounts(int(r["cache_hit_tokens"]), int(r["cache_miss_tokens"]),
                                    int(r["completion_tokens"]))
        revenue += Decimal(str(r["revenue"]))
        currencies.add(str(r["currency"]))
    if len(currencies) > 1:
        raise InvalidParameters(f"ledger rows mix currencies {sorted(currencies)}; filter to one")
    currency = currencies.pop() if currencies else "USD"
    if isinstance(cost_side, UnitPrices):
        if cost_side.currency != currency:
            raise InvalidParameters(f"revenue is in {currency}, cost in {cost_side.currency}")
        cost = round_money(raw_cost(usage, cost_side))
    else:
        cost = round_money(cost_side)
    return Margin(round_money(revenue), cost, currency)


def blended_output_capacity(hit_tps: float, miss_tps: float, output_tps: float,
                            input_per_output: float, hit_rate: float) -> float:
    """Output tokens/s when every output token brings `input_per_output` input tokens, a
    `hit_rate` share of them cache hits, and the GPUs split their time between the three."""
    seconds = 1 / output_tps
    seconds += input_per_output * (1 - hit_rate) / miss_tps
    seconds += input_per_output * hit_rate / hit_tps if hit_tps != float("inf") else 0
    return 1 / seconds
