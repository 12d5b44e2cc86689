"""Price lists: per model, prices over [effective_from, effective_to) with time-of-day windows."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal

from manxue.errors import InvalidParameters
from manxue.pricing.errors import PriceNotFound
from manxue.pricing.units import UnitPrices
from manxue.pricing.windows import TimeWindow
from manxue.timeutil import require_zone

# A currency, for price lists and keys alike: three capital letters, as in ISO 4217.
CURRENCY_CODE = re.compile(r"[A-Z]{3}")


def _fmt(when: datetime | None, open_end: str) -> str:
    return open_end if when is None else when.strftime("%Y-%m-%dT%H:%MZ")


@dataclass(frozen=True, slots=True)
class PriceEntry:
    """One model's prices over [effective_from, effective_to); None means unbounded."""

    model: str
    base: UnitPrices
    effective_from: datetime | None = None
    effective_to: datetime | None = None
    windows: tuple[TimeWindow, ...] = ()
    source: str = ""
    note: str = ""

    def __post_init__(self) -> None:
        if self.effective_from is not None:
            object.__setattr__(self, "effective_from", require_zone(self.effective_from, "effective_from"))
        if self.effective_to is not None:
            object.__setattr__(self, "effective_to", require_zone(self.effective_to, "effective_to"))
        if self.effective_from and self.effective_to and self.effective_to <= self.effective_from:
            raise InvalidParameters(f"{self.model}: effective_to must be after effective_from")

    def covers(self, when: datetime) -> bool:
        return ((self.effective_from is None or self.effective_from <= when)
                and (self.effective_to is None or when < self.effective_to))

    def window_at(self, when: datetime) -> TimeWindow | None:
        """The first window that contains `when` (order in the list decides), or None."""
        return next((w for w in self.windows if w.contains(when)), None)

    def period(self) -> str:
        return f"{_fmt(self.effective_from, '…')} → {_fmt(self.effective_to, '…')}"

    def scaled(self, factor: Decimal) -> PriceEntry:
        return replace(self, base=self.base.scaled(factor),
                       windows=tuple(w.scaled(factor) for w in self.windows))

    def overlaps(self, other: PriceEntry) -> bool:
        lo_a, hi_a = self.effective_from or datetime.min.replace(tzinfo=UTC), self.effective_to
        lo_b, hi_b = other.effective_from or datetime.min.replace(tzinfo=UTC), other.effective_to
        return (hi_b is None or lo_a < hi_b) and (hi_a is None or lo_b < hi_a)


@dataclass(frozen=True, slots=True)
class Quote:
    """What `price_at` found: the prices, and which entry and window gave them."""

    price_list: str
    model: str
    when: datetime
    prices: UnitPrices
    entry: PriceEntry
    window: str | None


@dataclass(frozen=True, slots=True)
class PriceList:
    """A named, single-currency price sheet. Immutable; entries never overlap per model."""

    id: str
    currency: str
    entries: tuple[PriceEntry, ...]
    title: str = ""
    source: str = ""
    note: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            raise InvalidParameters("a price list needs an id")
        if not CURRENCY_CODE.fullmatch(self.currency):
            raise InvalidParameters(f"price list {self.id}: currency must be a three-letter code "
                                    f"such as USD or CNY, not {self.currency!r}")
        for e in self.entries:
            if e.base.currency != self.currency:
                raise InvalidParameters(f"price list {self.id}: {e.model} is priced in "
                                        f"{e.base.currency}, the list in {self.currency}")
        for i, a in enumerate(self.entries):
            for b in self.entries[i + 1:]:
                if a.model == b.model and a.overlaps(b):
                    raise InvalidParameters(f"price list {self.id}: two entries for {a.model} "
                                            f"overlap ({a.period()} and {b.period()})")

    def models(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(e.model for e in self.entries))

    def entries_for(self, model: str) -> tuple[PriceEntry, ...]:
        found = tuple(sorted((e for e in self.entries if e.model == model),
                             key=lambda e: e.effective_from or datetime.min.replace(tzinfo=UTC)))
        if not found:
            raise PriceNotFound(f"price list {self.id} has no prices for model {model!r}; it "
                                f"prices {', '.join(self.models()) or 'nothing'}", param="model")
        return found

    def entry_at(self, model: str, when: datetime) -> PriceEntry:
        when = require_zone(when)
        entries = self.entries_for(model)
        for e in entries:
            if e.covers(when):
                return e
        periods = "; ".join(e.period() for e in entries)
        raise PriceNotFound(f"price list {self.id} has no price for {model} at "
                            f"{when.isoformat()}; its prices for {model} apply {periods}")

    def list_prices(self, model: str, when: datetime | None = None) -> UnitPrices:
        """Base prices (outside any window) in force at `when`, else those of the latest entry."""
        entries = self.entries_for(model)
        if when is not None:
            for e in entries:
                if e.covers(require_zone(when)):
                    return e.base
        return entries[-1].base


def quote(price_list: PriceList, model: str, when: datetime) -> Quote:
    when = require_zone(when)
    entry = price_list.entry_at(model, when)
    window = entry.window_at(when)
    prices = window.apply(entry.base) if window else entry.base
    return Quote(price_list.id, model, when, prices, entry, window.name if window else None)


def price_at(price_list: PriceList, model: str, when: datetime) -> UnitPrices:
    """Unit prices for `model` at `when` (time-zone aware); raises PriceNotFound if none apply."""
    return quote(price_list, model, when).prices


def markup(price_list: PriceList, percent: Decimal, new_id: str, title: str = "") -> PriceList:
    """List price + `percent` %: every base and explicit window price × (1 + percent/100).

    Prices are not rounded here; `cost` rounds once per request.
    """
    if not isinstance(percent, Decimal) or not percent.is_finite() or percent <= -100:
        raise InvalidParameters(f"markup percent must be a Decimal > -100, got {percent!r}")
    factor = 1 + percent / 100
    return PriceList(new_id, price_list.currency,
                     tuple(e.scaled(factor) for e in price_list.entries),
                     title or f"{price_list.title or price_list.id} + {percent}%",
                     source=f"{price_list.id} × {factor}", note=price_list.note)


def merge(lists: Iterable[PriceList], new_id: str, title: str = "", note: str = "") -> PriceList:
    """One list holding every entry of `lists` (same currency; entries must not overlap)."""
    parts = list(lists)
    if not parts:
        raise InvalidParameters(f"price list {new_id}: nothing to merge")
    currencies = {p.currency for p in parts}
    if len(currencies) != 1:
        raise InvalidParameters(f"price list {new_id}: cannot merge currencies {sorted(currencies)}")
    return PriceList(new_id, parts[0].currency, tuple(e for p in parts for e in p.entries),
                     title, source="merged from " + ", ".join(p.id for p in parts), note=note)
