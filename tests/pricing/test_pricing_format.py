"""An operator's own TOML price file: same format as the shipped data, clear errors."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest

from manxue.errors import ConfigError
from manxue.pricing import (
    PriceListNotFound,
    get_price_list,
    load_price_list,
    load_price_lists,
    price_at,
)

D = Decimal
WHEN = datetime.fromisoformat("2026-09-01T12:00:00+08:00")

OWN = """
[[list]]
id = "acme-2026"
currency = "USD"
source = "ACME resale sheet, 2026-09"

[[list.entry]]
model = "deepseek-v4-pro"
effective_from = 2026-09-01T00:00:00+08:00
hit = 0.05
miss = "0.80"
output = 2

[[list.entry.window]]
name = "night"
timezone = "Asia/Shanghai"
start = "22:00"
end = "07:00"
multiplier = 0.5

[[list]]
id = "acme-r1-plus-20"
base = "deepseek-r1-2025-02"
markup_percent = 20

[[list]]
id = "acme-all"
merge = ["acme-2026", "deepseek-v4-2026-04"]
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "prices.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_operator_file_with_windows_markup_and_merge(tmp_path: Path) -> None:
    lists = load_price_lists(write(tmp_path, OWN))
    assert sorted(lists) == ["acme-2026", "acme-all", "acme-r1-plus-20"]
    own = lists["acme-2026"]
    assert price_at(own, "deepseek-v4-pro", WHEN).miss == D("0.80")
    night = datetime.fromisoformat("2026-09-01T23:00:00+08:00")
    assert price_at(own, "deepseek-v4-pro", night).output == D(1)
    plus = lists["acme-r1-plus-20"]
    assert price_at(plus, "deepseek-reasoner",
                    datetime.fromisoformat("2025-03-01T12:00:00Z")).output == D("2.628")
    assert price_at(lists["acme-all"], "deepseek-v4-flash", WHEN).output == D("0.28")
    assert get_price_list("acme-all", lists).id == "acme-all"
    assert own.entries[0].source == "ACME resale sheet, 2026-09"


def test_load_one_list(tmp_path: Path) -> None:
    p = write(tmp_path, OWN)
    assert load_price_list(p, "acme-2026").currency == "USD"
    with pytest.raises(ConfigError, match="holds 3 lists"):
        load_price_list(p)


@pytest.mark.parametrize(("text", "message"), [
    ("[[list]]\nid='x'\ncurrency='USD'\n[[list.entry]]\nmodel='m'\nhit=1\nmiss=1\n", "output"),
    ("[[list]]\nid='x'\ncurrency='USD'\n[[list.entry]]\nmodel='m'\nhit=1\nmiss=1\noutput=1\n"
     "effective_from=2025-01-01T00:00:00\n", "no time zone"),
    ("[[list]]\nid='x'\ncurency='USD'\n", "unknown key"),
    ("[[list]]\nid='x'\nbase='nope'\n", "does not exist"),
    ("[[list]]\nid='x'\ncurrency='USD'\n[[list.entry]]\nmodel='m'\nhit=1\nmiss=1\noutput=1\n"
     "[[list.entry]]\nmodel='m'\nhit=2\nmiss=2\noutput=2\n", "overlap"),
    ("[[list]]\nid='x'\ncurrency='USD'\n[[list.entry]]\nmodel='m'\nhit=1\nmiss=1\noutput=1\n"
     "[[list.entry.window]]\nstart='16:30'\nend='00:30'\ntimezone='Mars/Olympus'\nmultiplier=0.5\n",
     "unknown time zone"),
    ("[[list]]\nid='x'\ncurrency='USD'\n[[list.entry]]\nmodel='m'\nhit=1\nmiss=1\noutput=1\n"
     "[[list.entry.window]]\nstart='16:30'\nend='00:30'\n", "exactly one of"),
    ("[[list]\n", "not valid TOML"),
    ("", "no \\[\\[list\\]\\] table"),
])
def test_bad_files_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as exc:
        load_price_lists(write(tmp_path, text))
    assert str(tmp_path) in str(exc.value)


def test_unknown_list_id_names_the_known_ones() -> None:
    with pytest.raises(PriceListNotFound, match="deepseek-r1-2025-02"):
        get_price_list("deepseek-r9")
