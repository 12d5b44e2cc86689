"""Era and time-of-day boundaries: inclusive starts, exclusive ends, weekday rules."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal

import pytest

from manxue.errors import InvalidParameters
from manxue.pricing import PriceNotFound, builtin_price_lists, price_at, quote
from manxue.pricing.windows import WORKDAYS, TimeWindow

D = Decimal


def at(s: str) -> datetime:
    return datetime.fromisoformat(s)


def r1_output(when: str) -> Decimal:
    return price_at(builtin_price_lists()["deepseek-r1-2025-02"], "deepseek-reasoner", at(when)).output


@pytest.mark.parametrize(("when", "output"), [
    ("2025-03-03T16:29:59.999999Z", "2.19"),
    ("2025-03-03T16:30:00Z", "0.55"),          # 16:30 inclusive
    ("2025-03-03T23:59:59Z", "0.55"),
    ("2025-03-04T00:00:00Z", "0.55"),          # across midnight
    ("2025-03-04T00:29:59.999999Z", "0.55"),
    ("2025-03-04T00:30:00Z", "2.19"),          # 00:30 exclusive
    ("2025-03-08T20:00:00Z", "0.55"),          # weekends too: the 2025 discount was daily
    ("2025-03-04T08:30:00+08:00", "2.19"),     # offsets are honoured (00:30 UTC)
    ("2025-03-04T08:29:00+08:00", "0.55"),
])
def test_2025_offpeak_window_edges(when: str, output: str) -> None:
    assert r1_output(when) == D(output)


def test_offpeak_starts_2025_02_26_1630_utc() -> None:
    assert r1_output("2025-02-25T20:00:00Z") == D("2.19")   # before the discount existed
    assert r1_output("2025-02-26T00:10:00Z") == D("2.19")   # no window "from the 25th"
    assert r1_output("2025-02-26T16:29:00Z") == D("2.19")
    assert r1_output("2025-02-26T16:30:00Z") == D("0.55")


def test_era_boundary_2025_02_08_1600() -> None:
    v3cny = builtin_price_lists()["deepseek-v3-2025-02-cny"]
    before = price_at(v3cny, "deepseek-chat", at("2025-02-08T15:59:59.999999Z"))
    after = price_at(v3cny, "deepseek-chat", at("2025-02-08T16:00:00Z"))
    assert (before.hit, before.miss, before.output) == (D("0.1"), D("1"), D("2"))
    assert (after.hit, after.miss, after.output) == (D("0.5"), D("2"), D("8"))
    with pytest.raises(PriceNotFound, match="2025-02-08T16:00Z"):  # no USD promo was collected
        price_at(builtin_price_lists()["deepseek-v3-2025-02"], "deepseek-chat",
                 at("2025-02-08T15:59:59Z"))


def test_era_boundary_2025_09_05_1600() -> None:
    hist = builtin_price_lists()["deepseek-history"]
    before = price_at(hist, "deepseek-reasoner", at("2025-09-05T15:59:59.999999Z"))
    after = price_at(hist, "deepseek-reasoner", at("2025-09-05T16:00:00Z"))
    assert (before.miss, before.output) == (D("0.55"), D("2.19"))
    assert (after.hit, after.miss, after.output) == (D("0.07"), D("0.56"), D("1.68"))
    # night discount cancelled: 20:00 UTC on 2025-09-06 pays the full V3.1 price
    assert price_at(hist, "deepseek-reasoner", at("2025-09-06T20:00:00Z")).output == D("1.68")
    with pytest.raises(PriceNotFound):
        price_at(builtin_price_lists()["deepseek-r1-2025-02"], "deepseek-reasoner",
                 at("2025-09-05T16:00:00Z"))


@pytest.mark.parametrize(("when", "window"), [
    ("2026-09-01T00:59:59Z", None),      # Tuesday
    ("2026-09-01T01:00:00Z", "peak"),
    ("2026-09-01T03:59:59Z", "peak"),
    ("2026-09-01T04:00:00Z", None),
    ("2026-09-01T05:59:59Z", None),
    ("2026-09-01T06:00:00Z", "peak"),
    ("2026-09-01T09:59:59Z", "peak"),
    ("2026-09-01T10:00:00Z", None),
    ("2026-09-04T02:00:00Z", "peak"),    # Friday
    ("2026-09-05T02:00:00Z", None),      # Saturday
    ("2026-09-06T07:00:00Z", None),      # Sunday
    ("2026-09-07T07:00:00Z", "peak"),    # Monday
])
def test_2026_peak_weekday_windows(when: str, window: str | None) -> None:
    q = quote(builtin_price_lists()["deepseek-2026-08"], "deepseek-v4-pro", at(when))
    assert q.window == window
    assert q.prices.output == (D("3.96") if window else D("1.98"))


def test_2026_scheme_starts_at_2026_08_16_1600() -> None:
    hist = builtin_price_lists()["deepseek-history"]
    assert price_at(hist, "deepseek-v4-pro", at("2026-08-16T15:59:59Z")).output == D("3.48")
    assert price_at(hist, "deepseek-v4-pro", at("2026-08-16T16:00:00Z")).output == D("1.98")
    with pytest.raises(PriceNotFound):
        price_at(hist, "deepseek-flash", at("2026-08-16T15:59:59Z"))


def test_legacy_names_priced_as_v4_flash_until_retired() -> None:
    v4 = builtin_price_lists()["deepseek-v4-2026-04"]
    assert price_at(v4, "deepseek-chat", at("2026-07-24T23:59:59Z")).output == D("0.28")
    with pytest.raises(PriceNotFound):
        price_at(v4, "deepseek-chat", at("2026-07-25T00:00:00Z"))


def test_window_wraps_and_refers_to_its_start_day() -> None:
    fri_night = TimeWindow("late", "UTC", time(22), time(2), weekdays=frozenset({4}),
                           multiplier=D("0.5"))
    assert fri_night.contains(at("2026-09-04T23:00:00Z"))        # Friday 23:00
    assert fri_night.contains(at("2026-09-05T01:59:00Z"))        # Saturday 01:59, began Friday
    assert not fri_night.contains(at("2026-09-05T23:00:00Z"))    # Saturday night
    assert not fri_night.contains(at("2026-09-04T01:00:00Z"))    # Friday 01:00 began Thursday


def test_window_in_another_zone_and_excluded_dates() -> None:
    peak_cn = TimeWindow("peak", "Asia/Shanghai", time(9), time(12), weekdays=WORKDAYS,
                         multiplier=D(2), exclude_dates=frozenset({date(2026, 10, 1)}))
    assert peak_cn.contains(at("2026-09-30T01:00:00Z"))          # 09:00 Beijing, Wednesday
    assert not peak_cn.contains(at("2026-10-01T01:00:00Z"))      # excluded date
    assert not peak_cn.contains(at("2026-09-30T04:00:00Z"))      # 12:00 Beijing, exclusive


def test_whole_day_window() -> None:
    w = TimeWindow("all", "UTC", time(0), time(0), weekdays=frozenset({6}), multiplier=D(0))
    sunday = at("2026-09-06T00:00:00Z")
    assert all(w.contains(sunday + timedelta(hours=h)) for h in range(24))
    assert not w.contains(sunday + timedelta(hours=24))


def test_naive_times_and_unknown_models_are_refused_clearly() -> None:
    r1 = builtin_price_lists()["deepseek-r1-2025-02"]
    with pytest.raises(InvalidParameters, match="no time zone"):
        price_at(r1, "deepseek-reasoner", datetime(2025, 3, 1, 12))
    with pytest.raises(PriceNotFound, match="deepseek-chat") as exc:
        price_at(r1, "deepseek-chat", at("2025-03-01T12:00:00Z"))
    assert exc.value.status == 422 and exc.value.code == "price_not_found"
