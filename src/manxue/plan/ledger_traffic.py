"""A traffic profile from the usage ledger: tokens per hour, as the gateway billed them.

The ledger's rows (one per request) are summed into UTC hours by accounting.reports
(`hourly_tokens`); here they become a profile in which hours without traffic count as zero,
so the troughs are part of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from manxue.errors import InvalidParameters
from manxue.plan.traffic import HourTraffic
from manxue.pricing import TokenCounts


def hours_from_sums(sums: Mapping[datetime, tuple[int, int, int]],
                    what: str = "") -> list[HourTraffic]:
    """Hourly (prompt, cache-hit, completion) sums → a profile with every hour from the first
    to the last, quiet hours as zero."""
    if not sums:
        raise InvalidParameters(f"the ledger has no requests{what} in that window: widen --days "
                                "or check that --config names the gateway's database")
    first, last = min(sums), max(sums)
    hours = []
    at = first
    while at <= last:
        prompt, hit, completion = sums.get(at, (0, 0, 0))
        hours.append(HourTraffic(at, TokenCounts(min(hit, prompt), max(prompt - hit, 0),
                                                 completion)))
        at += timedelta(hours=1)
    return hours


def profile(hours: Sequence[HourTraffic]) -> dict[str, Any]:
    """What the profile says: totals, cache-hit share, peak and trough hours."""
    def tokens(h: HourTraffic) -> int:
        u = h.usage
        return u.hit + u.miss + u.output

    inputs = sum(h.usage.hit + h.usage.miss for h in hours)
    hits = sum(h.usage.hit for h in hours)
    busy = [tokens(h) for h in hours]
    peak, trough = max(busy), min(busy)
    return {"hours": len(hours), "from": hours[0].when.isoformat(),
            "to": (hours[-1].when + timedelta(hours=1)).isoformat(),
            "input_tokens": inputs, "cache_hit_tokens": hits,
            "output_tokens": sum(h.usage.output for h in hours),
            "cache_hit_share": hits / inputs if inputs else 0.0,
            "peak_hour_tokens": peak, "trough_hour_tokens": trough,
            "peak_to_trough": peak / trough if trough else None,
            "peak_to_mean": peak / (sum(busy) / len(busy)) if sum(busy) else None}
