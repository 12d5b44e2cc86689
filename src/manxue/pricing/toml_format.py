"""Read price lists from TOML (the shipped data files and an operator's own file, one format).

    [[list]]
    id = "deepseek-r1-2025-02"          # unique id
    currency = "USD"                    # every price in the list is in this currency
    title = "…"                         # optional
    source = "…"                        # where the numbers come from (default for entries)
    note = "…"                          # optional

    [[list.entry]]
    model = "deepseek-reasoner"
    effective_from = 2025-02-08T16:00:00Z   # optional; offset required; inclusive
    effective_to = 2025-02-26T16:30:00Z     # optional; exclusive
    hit = 0.14                              # per 1M cache-hit input tokens
    miss = 0.55                             # per 1M cache-miss input tokens
    output = 2.19                           # per 1M output tokens (reasoning included)

    [[list.entry.window]]                   # optional, first match wins
    name = "off-peak"
    timezone = "UTC"                        # IANA name, e.g. Asia/Shanghai
    start = 16:30:00                        # local time, inclusive
    end = 00:30:00                          # local time, exclusive; end <= start wraps midnight
    weekdays = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]   # default: every day
    exclude_dates = [2026-10-01]            # local start dates on which the window is off
    hit = 0.035                             # explicit prices …
    miss = 0.135
    output = 0.55
    # multiplier = 0.5                      # … or a multiplier of the entry's prices

    [[list]]                                # derived lists:
    id = "acme-r1"
    base = "deepseek-r1-2025-02"            # another list's entries …
    markup_percent = 20                     # … × 1.20 ("list price + 20%")

    [[list]]
    id = "deepseek-usd"
    merge = ["deepseek-v3-2025-02", "deepseek-r1-2025-02"]   # union of other lists

Numbers are read as Decimal straight from the TOML text (never through float), so 0.14 is
exactly 0.14. Quoted strings ("0.14") work too.
"""

from __future__ import annotations

import tomllib
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any

from manxue.errors import ConfigError, InvalidParameters
from manxue.pricing.lists import PriceEntry, PriceList, markup, merge
from manxue.pricing.units import UnitPrices
from manxue.pricing.windows import ALL_DAYS, TimeWindow, parse_weekdays

_LIST_KEYS = {"id", "currency", "title", "source", "note", "entry", "base", "markup_percent", "merge"}
_ENTRY_KEYS = {"model", "effective_from", "effective_to", "hit", "miss", "output", "source", "note",
               "window"}
_WINDOW_KEYS = {"name", "timezone", "start", "end", "weekdays", "exclude_dates", "multiplier",
                "hit", "miss", "output"}


def _check_keys(table: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise InvalidParameters(f"{where}: unknown key(s) {', '.join(unknown)}; "
                                f"allowed: {', '.join(sorted(allowed))}")


def _decimal(value: Any, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | str | Decimal):
        raise InvalidParameters(f"{where}: expected a number, got {value!r}")
    try:
        return Decimal(value)
    except InvalidOperation:
        raise InvalidParameters(f"{where}: {value!r} is not a number") from None


def _time(value: Any, where: str) -> time:
    if isinstance(value, time):
        return value
    if isinstance(value, str):
        try:
            return time.fromisoformat(value)
        except ValueError:
            pass
    raise InvalidParameters(f"{where}: expected a local time like 16:30:00, got {value!r}")


def _datetime(value: Any, where: str) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    raise InvalidParameters(f"{where}: expected a date-time with offset, got {value!r}")


def _window(t: dict[str, Any], where: str) -> TimeWindow:
    _check_keys(t, _WINDOW_KEYS, where)
    explicit = [k for k in ("hit", "miss", "output") if k in t]
    if explicit and len(explicit) != 3:
        raise InvalidParameters(f"{where}: give all of hit, miss, output (or a multiplier)")
    prices = tuple(_decimal(t[k], f"{where}.{k}") for k in ("hit", "miss", "output")) \
        if explicit else None
    dates = t.get("exclude_dates", [])
    if not all(isinstance(d, date) and not isinstance(d, datetime) for d in dates):
        raise InvalidParameters(f"{where}.exclude_dates: expected local dates like 2026-10-01")
    return TimeWindow(
        name=str(t.get("name", "window")), timezone=str(t.get("timezone", "UTC")),
        start=_time(t.get("start"), f"{where}.start"), end=_time(t.get("end"), f"{where}.end"),
        weekdays=parse_weekdays(t["weekdays"]) if "weekdays" in t else ALL_DAYS,
        multiplier=_decimal(t["multiplier"], f"{where}.multiplier") if "multiplier" in t else None,
        prices=(prices[0], prices[1], prices[2]) if prices else None,
        exclude_dates=frozenset(dates))


def _entry(t: dict[str, Any], currency: str, source: str, where: str) -> PriceEntry:
    _check_keys(t, _ENTRY_KEYS, where)
    if "model" not in t:
        raise InvalidParameters(f"{where}: model is required")
    hit, miss, out = (_decimal(t.get(k), f"{where}.{k}") for k in ("hit", "miss", "output"))
    base = UnitPrices(hit, miss, out, currency)
    windows = tuple(_window(w, f"{where}.window[{i}]") for i, w in enumerate(t.get("window", [])))
    return PriceEntry(
        model=str(t["model"]), base=base,
        effective_from=_datetime(t.get("effective_from"), f"{where}.effective_from"),
        effective_to=_datetime(t.get("effective_to"), f"{where}.effective_to"),
        windows=windows, source=str(t.get("source", source)), note=str(t.get("note", "")))


def _plain_list(t: dict[str, Any], where: str) -> PriceList:
    currency = str(t.get("currency", "")).upper()
    source = str(t.get("source", ""))
    entries = tuple(_entry(e, currency, source, f"{where}.entry[{i}]")
                    for i, e in enumerate(t.get("entry", [])))
    return PriceList(str(t["id"]), currency, entries, str(t.get("title", "")), source,
                     str(t.get("note", "")))


def _derived_list(t: dict[str, Any], known: dict[str, PriceList], where: str) -> PriceList | None:
    """The list, or None while a list it names is not known yet."""
    list_id, title, note = str(t["id"]), str(t.get("title", "")), str(t.get("note", ""))
    if "merge" in t:
        names = [str(n) for n in t["merge"]]
        if not all(n in known for n in names):
            return None
        return merge((known[n] for n in names), list_id, title, note)
    base = str(t["base"])
    if base not in known:
        return None
    return markup(known[base], _decimal(t.get("markup_percent", 0), f"{where}.markup_percent"),
                  list_id, title)


def parse_price_lists(doc: dict[str, Any], known: dict[str, PriceList] | None = None,
                      origin: str = "<toml>") -> dict[str, PriceList]:
    """Every list in a parsed TOML document; derived lists may name `known` lists or each other."""
    known = dict(known or {})
    found: dict[str, PriceList] = {}
    pending: list[tuple[str, dict[str, Any]]] = []
    for i, t in enumerate(doc.get("list", [])):
        where = f"{origin}: list[{i}]"
        _check_keys(t, _LIST_KEYS, where)
        if "id" not in t:
            raise InvalidParameters(f"{where}: id is required")
        if str(t["id"]) in found:
            raise InvalidParameters(f"{where}: duplicate id {t['id']!r}")
        if "base" in t or "merge" in t:
            pending.append((where, t))
        else:
            found[str(t["id"])] = _plain_list(t, where)
    while pending:
        progress = []
        for where, t in pending:
            lst = _derived_list(t, known | found, where)
            if lst is not None:
                found[lst.id] = lst
                progress.append((where, t))
        if not progress:
            where, t = pending[0]
            raise InvalidParameters(f"{where}: {t['id']!r} names a list that does not exist "
                                    f"({t.get('base') or t.get('merge')})")
        pending = [p for p in pending if p not in progress]
    return found


def read_price_lists(text: str, known: dict[str, PriceList] | None = None,
                     origin: str = "<toml>") -> dict[str, PriceList]:
    """Parse TOML text; any error becomes a ConfigError that names `origin`."""
    try:
        doc = tomllib.loads(text, parse_float=Decimal)
        return parse_price_lists(doc, known, origin)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{origin}: not valid TOML: {exc}") from None
    except InvalidParameters as exc:
        msg = exc.message if exc.message.startswith(origin) else f"{origin}: {exc.message}"
        raise ConfigError(msg) from None
