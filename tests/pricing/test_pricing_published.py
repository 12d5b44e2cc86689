"""Every published price in the shipped catalog, as DeepSeek (and OpenAI) published them."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal

import pytest

from manxue.pricing import builtin_price_lists, price_at

D = Decimal


def at(s: str) -> datetime:
    return datetime.fromisoformat(s)


# (list id, model, time in UTC, hit, miss, output)
PUBLISHED = [
    # February 2025, standard hours
    ("deepseek-v3-2025-02", "deepseek-chat", "2025-02-20T12:00:00Z", "0.07", "0.27", "1.10"),
    ("deepseek-r1-2025-02", "deepseek-reasoner", "2025-02-20T12:00:00Z", "0.14", "0.55", "2.19"),
    ("deepseek-v3-2025-02-cny", "deepseek-chat", "2025-02-20T12:00:00Z", "0.5", "2", "8"),
    ("deepseek-r1-2025-02-cny", "deepseek-reasoner", "2025-02-20T12:00:00Z", "1", "4", "16"),
    # V3 launch promotion (CNY only)
    ("deepseek-v3-2025-02-cny", "deepseek-chat", "2025-01-15T00:00:00Z", "0.1", "1", "2"),
    # off-peak 16:30–00:30 UTC from 2025-02-26: both models become 0.035 / 0.135 / 0.55 USD
    ("deepseek-v3-2025-02", "deepseek-chat", "2025-03-10T20:00:00Z", "0.035", "0.135", "0.55"),
    ("deepseek-r1-2025-02", "deepseek-reasoner", "2025-03-10T20:00:00Z", "0.035", "0.135", "0.55"),
    ("deepseek-v3-2025-02-cny", "deepseek-chat", "2025-03-10T20:00:00Z", "0.25", "1", "4"),
    ("deepseek-r1-2025-02-cny", "deepseek-reasoner", "2025-03-10T20:00:00Z", "0.25", "1", "4"),
    # V3.1 (2025-09-05 16:00 UTC), no night discount
    ("deepseek-v3.1-2025-09", "deepseek-chat", "2025-09-10T20:00:00Z", "0.07", "0.56", "1.68"),
    ("deepseek-v3.1-2025-09", "deepseek-reasoner", "2025-09-10T20:00:00Z", "0.07", "0.56", "1.68"),
    # V3.2-Exp
    ("deepseek-v3.2-exp-2025-09", "deepseek-chat", "2025-12-01T00:00:00Z", "0.028", "0.28", "0.42"),
    ("deepseek-v3.2-exp-2025-09", "deepseek-reasoner", "2025-12-01T00:00:00Z", "0.028", "0.28",
     "0.42"),
    # V4 launch 2026-04-24
    ("deepseek-v4-2026-04", "deepseek-v4-flash", "2026-05-01T00:00:00Z", "0.028", "0.14", "0.28"),
    ("deepseek-v4-2026-04", "deepseek-v4-pro", "2026-05-01T00:00:00Z", "0.145", "1.74", "3.48"),
    ("deepseek-v4-2026-04-cny", "deepseek-v4-flash", "2026-05-01T00:00:00Z", "0.2", "1", "2"),
    ("deepseek-v4-2026-04-cny", "deepseek-v4-pro", "2026-05-01T00:00:00Z", "1", "12", "24"),
    # from 2026-08-16 16:00 UTC: Tuesday 2026-09-01 02:00 UTC is peak, 12:00 is off-peak
    ("deepseek-2026-08", "deepseek-flash", "2026-09-01T02:00:00Z", "0.006", "0.30", "1.20"),
    ("deepseek-2026-08", "deepseek-flash", "2026-09-01T12:00:00Z", "0.003", "0.15", "0.60"),
    ("deepseek-2026-08", "deepseek-v4-pro", "2026-09-01T02:00:00Z", "0.044", "1.32", "3.96"),
    ("deepseek-2026-08", "deepseek-v4-pro", "2026-09-01T12:00:00Z", "0.022", "0.66", "1.98"),
    ("deepseek-2026-08-cny", "deepseek-flash", "2026-09-01T02:00:00Z", "0.04", "2", "8"),
    ("deepseek-2026-08-cny", "deepseek-flash", "2026-09-01T12:00:00Z", "0.02", "1", "4"),
    ("deepseek-2026-08-cny", "deepseek-v4-pro", "2026-09-01T02:00:00Z", "0.30", "9", "27"),
    ("deepseek-2026-08-cny", "deepseek-v4-pro", "2026-09-01T12:00:00Z", "0.15", "4.5", "13.5"),
    # comparison (2025-03): input priced as both hit and miss
    ("openai-2025-03", "gpt-4o", "2025-03-15T00:00:00Z", "2.5", "2.5", "10"),
    ("openai-2025-03", "gpt-4.5", "2025-03-15T00:00:00Z", "75", "75", "150"),
]


@pytest.mark.parametrize(("list_id", "model", "when", "hit", "miss", "output"), PUBLISHED)
def test_published_price(list_id: str, model: str, when: str, hit: str, miss: str,
                         output: str) -> None:
    lst = builtin_price_lists()[list_id]
    p = price_at(lst, model, at(when))
    assert (p.hit, p.miss, p.output) == (D(hit), D(miss), D(output))
    assert p.currency == ("CNY" if list_id.endswith("-cny") else "USD")


def test_required_ids_exist_with_their_currency() -> None:
    lists = builtin_price_lists()
    for list_id in ("deepseek-r1-2025-02", "deepseek-v3-2025-02", "deepseek-v3.1-2025-09",
                    "deepseek-v3.2-exp-2025-09", "deepseek-v4-2026-04", "deepseek-2026-08",
                    "openai-2025-03", "deepseek-history", "deepseek-2025-02"):
        assert lists[list_id].currency == "USD"
    for list_id in ("deepseek-r1-2025-02-cny", "deepseek-v3-2025-02-cny", "deepseek-v4-2026-04-cny",
                    "deepseek-2026-08-cny", "deepseek-history-cny", "deepseek-2025-02-cny"):
        assert lists[list_id].currency == "CNY"


def test_every_entry_names_its_source() -> None:
    """Each entry names where its prices were published, never a file that does not ship."""
    for lst in builtin_price_lists().values():
        for e in lst.entries:
            assert e.source and ("DeepSeek" in e.source or "OpenAI" in e.source), (lst.id, e.model)
            assert not re.search(r"shared|facts|\.md\b|docs/", e.source), (lst.id, e.source)


def test_prices_are_exact_decimals_from_the_text() -> None:
    p = price_at(builtin_price_lists()["deepseek-r1-2025-02"], "deepseek-reasoner",
                 at("2025-03-01T12:00:00Z"))
    assert str(p.output) == "2.19" and p.output == D("2.19")


@pytest.mark.parametrize(("when", "output"), [
    ("2025-03-01T12:00:00Z", "1.10"),      # V3 Feb prices
    ("2025-09-10T12:00:00Z", "1.68"),      # V3.1
    ("2026-01-10T12:00:00Z", "0.42"),      # V3.2-Exp
    ("2026-05-10T12:00:00Z", "0.28"),      # served by V4-Flash
])
def test_history_follows_the_eras(when: str, output: str) -> None:
    hist = builtin_price_lists()["deepseek-history"]
    assert price_at(hist, "deepseek-chat", at(when)).output == D(output)
