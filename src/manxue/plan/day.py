"""DeepSeek's published production day (2025-02-27 12:00 → 02-28 12:00, UTC+8), recomputed.

Cost: 226.75 nodes × 8 GPUs × 24 h × $2 = $87,072.
Revenue: every token at R1's list prices (0.14 / 0.55 / 2.19 USD per 1M). The published token
counts are rounded to whole billions; priced exactly they give $562,100, $73 (0.013%) above
the published $562,027. Keeping input (608B) and output (168B) as published, the published
revenue implies 342.178B cache hits (56.28%), which is what "342B (56.3%)" rounds from, so
the published figure is all tokens at R1 list prices with unrounded counts. With that count
the revenue is $562,027.00 and the margin (562,027 − 87,072) / 87,072 = 5.4547 → 545%.
Applying the 2025 off-peak discount (75% off for R1, 16:30–00:30 UTC) to the same tokens,
spread evenly over the day, would instead give about $421k: DeepSeek's figure ignores it.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from functools import lru_cache
from importlib import resources
from typing import Any

from manxue.plan.economics import Margin, traffic_margin
from manxue.pricing import PriceList, TokenCounts, UnitPrices, get_price_list, price_at
from manxue.pricing.units import raw_cost, round_money


@dataclass(frozen=True, slots=True)
class PublishedDay:
    source: str
    start: datetime
    end: datetime
    nodes_average: Decimal
    nodes_peak: int
    gpus_per_node: int
    hardware: str
    gpu_hour_usd: Decimal
    input_tokens: int
    cache_hit_tokens: int
    cache_hit_share_percent: Decimal
    output_tokens: int
    price_list: str
    price_model: str
    published_cost_usd: Decimal
    published_revenue_usd: Decimal
    published_cost_profit_margin_percent: Decimal

    @property
    def hours(self) -> Decimal:
        return Decimal((self.end - self.start).total_seconds()) / 3600


@lru_cache(maxsize=1)
def published_day() -> PublishedDay:
    text = (resources.files("manxue.plan") / "data" / "deepseek_day.toml").read_text(encoding="utf-8")
    raw: dict[str, Any] = tomllib.loads(text, parse_float=Decimal)
    for key in ("gpu_hour_usd", "published_cost_usd", "published_revenue_usd",
                "published_cost_profit_margin_percent", "nodes_average"):
        raw[key] = Decimal(raw[key])
    return PublishedDay(**raw)


def day_cost(nodes: Decimal, gpus_per_node: int, hours: Decimal, gpu_hour: Decimal) -> Decimal:
    return nodes * gpus_per_node * hours * gpu_hour


def implied_hit_tokens(input_tokens: int, output_tokens: int, prices: UnitPrices,
                       revenue: Decimal) -> int:
    """The cache-hit count for which `prices` give `revenue`, input and output held fixed."""
    numerator = (input_tokens * prices.miss + output_tokens * prices.output
                 - revenue * 1_000_000)
    return int((numerator / (prices.miss - prices.hit)).to_integral_value(ROUND_HALF_EVEN))


def offpeak_revenue_flat(usage: TokenCounts, price_list: PriceList, model: str, start: datetime,
                         end: datetime) -> Decimal:
    """Revenue if the tokens were spread evenly by minute and priced with time-of-day windows."""
    minutes = int((end - start).total_seconds() // 60)
    total = sum((raw_cost(usage, price_at(price_list, model, start + timedelta(minutes=m)))
                 for m in range(minutes)), Decimal(0))
    return round_money(total / minutes)


def _usage(day: PublishedDay, hits: int) -> TokenCounts:
    return TokenCounts(hits, day.input_tokens - hits, day.output_tokens)


def deepseek_day(price_list: PriceList | None = None) -> dict[str, Any]:
    """The day's cost, revenue and margin, with the reconciliation to the published figures."""
    day = published_day()
    plist = price_list or get_price_list(day.price_list)
    prices = plist.list_prices(day.price_model, day.start)
    cost = day_cost(day.nodes_average, day.gpus_per_node, day.hours, day.gpu_hour_usd)
    hits = implied_hit_tokens(day.input_tokens, day.output_tokens, prices, day.published_revenue_usd)
    result: Margin = traffic_margin(_usage(day, hits), prices, cost)
    rounded = traffic_margin(_usage(day, day.cache_hit_tokens), prices, cost)
    margin = result.cost_profit_margin or Decimal(0)
    return {
        "source": day.source,
        "period": {"start": day.start.isoformat(), "end": day.end.isoformat()},
        "hardware": day.hardware,
        "nodes_average": day.nodes_average, "nodes_peak": day.nodes_peak,
        "gpus_per_node": day.gpus_per_node, "hours": day.hours,
        "gpu_hours": day.nodes_average * day.gpus_per_node * day.hours,
        "gpu_hour_usd": day.gpu_hour_usd,
        "cost_usd": cost,
        "tokens": {"input": day.input_tokens, "cache_hit": hits,
                   "cache_miss": day.input_tokens - hits, "output": day.output_tokens},
        "price_list": plist.id, "price_model": day.price_model,
        "unit_prices_usd": prices.as_dict(),
        "revenue_usd": result.revenue.quantize(Decimal("0.01")),
        "profit_usd": result.profit.quantize(Decimal("0.01")),
        "cost_profit_margin": margin,
        "cost_profit_margin_percent": (margin * 100).quantize(Decimal(1)),
        "published": {
            "cost_usd": day.published_cost_usd, "revenue_usd": day.published_revenue_usd,
            "cost_profit_margin_percent": day.published_cost_profit_margin_percent,
            "cache_hit_tokens": day.cache_hit_tokens,
            "cache_hit_share_percent": day.cache_hit_share_percent,
        },
        "reconciliation": {
            "revenue_usd_at_published_rounded_counts": rounded.revenue,
            "cost_profit_margin_at_published_rounded_counts": rounded.cost_profit_margin,
            "implied_cache_hit_tokens": hits,
            "implied_cache_hit_share_percent":
                (Decimal(hits) * 100 / day.input_tokens).quantize(Decimal("0.01")),
            "revenue_usd_if_offpeak_discount_applied_to_flat_traffic": offpeak_revenue_flat(
                _usage(day, hits), plist, day.price_model, day.start, day.end),
            "note": "published token counts are rounded to 1B; the published revenue implies "
                    "the unrounded cache-hit count above, with every token at R1 list prices",
        },
    }
