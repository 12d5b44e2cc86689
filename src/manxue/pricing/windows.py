"""Time-of-day price windows (off-peak discounts, peak surcharges) in a named time zone.

A window is [start, end) in local wall-clock time; when end <= start it wraps past
midnight (16:30–00:30 runs from 16:30 to 00:30 the next day; start == end is a whole day).
`weekdays` and `exclude_dates` refer to the local date on which the window *starts*, so a
Friday 16:30–00:30 window still covers Saturday 00:10.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from manxue.errors import InvalidParameters
from manxue.pricing.units import UnitPrices

WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALL_DAYS: frozenset[int] = frozenset(range(7))
WORKDAYS: frozenset[int] = frozenset(range(5))


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidParameters(f"unknown time zone {name!r} (use an IANA name such as UTC or "
                                "Asia/Shanghai)") from None


def parse_weekdays(names: list[str]) -> frozenset[int]:
    days = set()
    for n in names:
        key = n.strip().lower()[:3]
        if key not in WEEKDAY_NAMES:
            raise InvalidParameters(f"unknown weekday {n!r}; use {', '.join(WEEKDAY_NAMES)}")
        days.add(WEEKDAY_NAMES.index(key))
    return frozenset(days)


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """Prices that replace the entry's base prices inside [start, end) local time.

    Exactly one of `multiplier` (base × multiplier, e.g. 0.5 for 50% off) or `prices`
    (explicit hit, miss, output per 1M tokens) is set.
    """

    name: str
    timezone: str
    start: time
    end: time
    weekdays: frozenset[int] = ALL_DAYS
    multiplier: Decimal | None = None
    prices: tuple[Decimal, Decimal, Decimal] | None = None
    exclude_dates: frozenset[date] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        zone(self.timezone)
        if (self.multiplier is None) == (self.prices is None):
            raise InvalidParameters(f"window {self.name!r}: set exactly one of multiplier or prices")
        if self.multiplier is not None and (not self.multiplier.is_finite() or self.multiplier < 0):
            raise InvalidParameters(f"window {self.name!r}: multiplier must be >= 0")
        if self.prices is not None and any(not p.is_finite() or p < 0 for p in self.prices):
            raise InvalidParameters(f"window {self.name!r}: prices must be >= 0")
        if not self.weekdays or not self.weekdays <= ALL_DAYS:
            raise InvalidParameters(f"window {self.name!r}: weekdays must name at least one day")
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise InvalidParameters(f"window {self.name!r}: give start/end as local times "
                                    "without offset; the zone is `timezone`")

    def start_day(self, when: datetime) -> date | None:
        """The local date this window instance began on, or None when `when` is outside it."""
        local = when.astimezone(zone(self.timezone))
        t, d = local.time().replace(tzinfo=None), local.date()
        if self.start < self.end:
            return d if self.start <= t < self.end else None
        if t >= self.start:
            return d
        if t < self.end or self.start == self.end:
            return d - timedelta(days=1)
        return None

    def contains(self, when: datetime) -> bool:
        day = self.start_day(when)
        return day is not None and day.weekday() in self.weekdays and day not in self.exclude_dates

    def apply(self, base: UnitPrices) -> UnitPrices:
        if self.prices is not None:
            return UnitPrices(*self.prices, currency=base.currency)
        return base.scaled(self.multiplier if self.multiplier is not None else Decimal(1))

    def scaled(self, factor: Decimal) -> TimeWindow:
        """The same window with explicit prices times `factor` (multipliers are unchanged)."""
        if self.prices is None:
            return self
        hit, miss, out = self.prices
        return TimeWindow(self.name, self.timezone, self.start, self.end, self.weekdays,
                          None, (hit * factor, miss * factor, out * factor), self.exclude_dates)

    def span(self) -> str:
        """When the window applies: "01:00–04:00 UTC mon,tue,wed,thu,fri"."""
        days = "daily" if self.weekdays == ALL_DAYS else ",".join(
            WEEKDAY_NAMES[d] for d in sorted(self.weekdays))
        return f"{self.start:%H:%M}–{self.end:%H:%M} {self.timezone} {days}"

    def describe(self) -> str:
        what = f"× {self.multiplier}" if self.multiplier is not None else \
            "/".join(str(p) for p in self.prices or ())
        return (f"{self.name} {self.span()}: {what}"
                + (f" (except {len(self.exclude_dates)} dates)" if self.exclude_dates else ""))
