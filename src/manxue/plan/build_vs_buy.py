"""Build vs buy: a cloud API, self-hosting sized for the peak, or a hybrid.

For each hour of the profile, the work is expressed in deployment units (one unit = the
planned `gpus`): hits / hit rate + misses / prefill rate + output / decode rate, in hours.
  (a) cloud       every token at the price list, priced at its hour (time windows apply)
  (b) self-host   ceil(peak need) units, rented all month
  (c) hybrid-pN   ceil(N-th percentile of need) units; each hour's excess share of tokens
                  goes to the cloud at the price list
A month is 730 hours; the profile is scaled to it. Utilisation = served work / rented units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from manxue.errors import InvalidParameters
from manxue.plan.capacity import Capacity
from manxue.plan.traffic import HourTraffic
from manxue.pricing import PriceList, TokenCounts, price_at
from manxue.pricing.units import raw_cost, round_money

MONTH_HOURS = 730
DEFAULT_PERCENTILES = (50, 75, 90, 95)


@dataclass(frozen=True, slots=True)
class Option:
    name: str
    units: int
    gpus: int
    self_host_usd: Decimal
    cloud_usd: Decimal
    cloud_token_share: float
    utilisation: float | None

    @property
    def monthly_usd(self) -> Decimal:
        return self.self_host_usd + self.cloud_usd

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "units": self.units, "gpus": self.gpus,
                "monthly_usd": self.monthly_usd, "self_host_usd": self.self_host_usd,
                "cloud_usd": self.cloud_usd, "cloud_token_share": round(self.cloud_token_share, 4),
                "utilisation": None if self.utilisation is None else round(self.utilisation, 4)}


def default_start(plist: PriceList, model: str, now: datetime | None = None) -> datetime:
    """Monday 00:00 UTC of this week if the list prices `model` then, else the first Monday
    00:00 UTC inside the list's latest entry for it."""
    now = now or datetime.now(UTC)
    monday = (now - timedelta(days=now.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
    entries = plist.entries_for(model)
    if any(e.covers(monday) for e in entries):
        return monday
    start = entries[-1].effective_from or monday
    first = (start + timedelta(days=(7 - start.weekday()) % 7)).replace(
        hour=0, minute=0, second=0, microsecond=0)
    return first if first >= start else first + timedelta(days=7)


def need_units(h: HourTraffic, cap: Capacity) -> float:
    """Deployment-unit hours this hour's tokens take."""
    if not cap.decode:
        raise InvalidParameters("the model does not fit on one unit; raise --gpus", param="gpus")
    u = h.usage
    seconds = (u.hit / cap.hit_tokens_per_s + u.miss / cap.prefill_tokens_per_s
               + u.output / cap.decode_tokens_per_s)
    return seconds / 3600


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def _scaled(usage: TokenCounts, share: float) -> TokenCounts:
    return TokenCounts(round(usage.hit * share), round(usage.miss * share), round(usage.output * share))


def compare(hours: list[HourTraffic], cap: Capacity, gpu_hour: Decimal, plist: PriceList,
            model: str, percentiles: tuple[float, ...] = DEFAULT_PERCENTILES) -> dict[str, Any]:
    if plist.currency != "USD":
        raise InvalidParameters(f"price list {plist.id} is in {plist.currency}; use a USD list",
                                param="price_list")
    if any(not 0 < p <= 100 for p in percentiles):
        raise InvalidParameters("percentiles must be in (0, 100]", param="percentile")
    scale = Decimal(MONTH_HOURS) / len(hours)
    needs = [need_units(h, cap) for h in hours]
    hour_prices = [price_at(plist, model, h.when) for h in hours]
    cloud_each = [raw_cost(h.usage, p) for h, p in zip(hours, hour_prices, strict=True)]
    unit_month = cap.deployment.gpus * gpu_hour * MONTH_HOURS
    total_tokens = sum(h.usage.input + h.usage.output for h in hours)

    def self_hosted(name: str, units: int) -> Option:
        overflow = Decimal(0)
        moved = 0
        for h, need, p in zip(hours, needs, hour_prices, strict=True):
            if need > units:
                part = _scaled(h.usage, 1 - units / need)
                overflow += raw_cost(part, p)
                moved += part.input + part.output
        served = sum(min(n, units) for n in needs) / len(needs)
        return Option(name, units, units * cap.deployment.gpus, round_money(units * unit_month),
                      round_money(overflow * scale), moved / total_tokens if total_tokens else 0.0,
                      served / units if units else None)

    options = [Option("cloud", 0, 0, Decimal(0), round_money(sum(cloud_each, Decimal(0)) * scale),
                      1.0, None),
               self_hosted("self-host-peak", max(1, math.ceil(max(needs))))]
    for p in percentiles:
        options.append(self_hosted(f"hybrid-p{p:g}", math.ceil(_percentile(needs, p))))
    cheapest = min(options, key=lambda o: o.monthly_usd)
    month = _scaled(sum((h.usage for h in hours), TokenCounts()), float(scale))
    return {
        "hours": len(hours), "month_hours": MONTH_HOURS, "price_list": plist.id, "model": model,
        "tokens_per_month": {"cache_hit": month.hit, "cache_miss": month.miss, "output": month.output},
        "unit": {"gpus": cap.deployment.gpus, "hardware": cap.deployment.hw.id,
                 "usd_per_hour": cap.deployment.gpus * gpu_hour,
                 "decode_tokens_per_s": cap.decode_tokens_per_s,
                 "prefill_tokens_per_s": cap.prefill_tokens_per_s,
                 "efficiency": cap.deployment.efficiency},
        "need_units": {"peak": max(needs), "mean": sum(needs) / len(needs), "trough": min(needs),
                       "peak_to_trough": max(needs) / min(needs) if min(needs) else None},
        "options": [o.as_dict() for o in options],
        "cheapest": cheapest.name,
    }
