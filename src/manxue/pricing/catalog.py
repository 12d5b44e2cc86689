"""The price catalog: DeepSeek's published price history (and comparisons) shipped as data.

    builtin_price_lists()      every shipped list by id (see docs/pricing.md for the ids)
    get_price_list(id)         one list, or PriceListNotFound naming the known ids
    load_price_list(path)      an operator's own TOML file (format: pricing/toml_format.py)
    price_at(list, model, t)   unit prices in force at t (windows applied)
    cost(usage, prices)        Decimal, quantized to 1e-8 ROUND_HALF_EVEN
    markup(list, pct, id)      "list price + pct %"
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from importlib import resources
from pathlib import Path

from manxue.errors import ConfigError, ManxueError
from manxue.pricing.errors import PriceListNotFound
from manxue.pricing.lists import PriceEntry, PriceList, Quote, markup, merge, price_at, quote
from manxue.pricing.toml_format import read_price_lists
from manxue.pricing.units import MONEY_QUANTUM, TokenCounts, UnitPrices, cost, markup_prices

__all__ = [
    "MONEY_QUANTUM", "PriceEntry", "PriceList", "Quote", "TokenCounts", "UnitPrices",
    "builtin_price_lists", "cost", "get_price_list", "load_price_list", "load_price_lists",
    "markup", "markup_prices", "merge", "price_at", "quote",
]

# Order matters: later files may derive from lists in earlier ones.
DATA_FILES = ("deepseek-2025.toml", "deepseek-2026.toml", "openai-2025-03.toml", "history.toml")


@lru_cache(maxsize=1)
def _builtin() -> tuple[tuple[str, PriceList], ...]:
    known: dict[str, PriceList] = {}
    data = resources.files("manxue.pricing") / "data"
    for name in DATA_FILES:
        text = (data / name).read_text(encoding="utf-8")
        for list_id, lst in read_price_lists(text, known, f"manxue/pricing/data/{name}").items():
            if list_id in known:
                raise ConfigError(f"price list id {list_id!r} is defined twice in the shipped data")
            known[list_id] = lst
    return tuple(known.items())


def builtin_price_lists() -> dict[str, PriceList]:
    """Every shipped price list by id (a fresh dict; the lists themselves are immutable)."""
    return dict(_builtin())


def get_price_list(list_id: str, extra: dict[str, PriceList] | None = None) -> PriceList:
    """A list by id from `extra` (an operator's lists) or the shipped ones."""
    lists = builtin_price_lists() | (extra or {})
    if list_id not in lists:
        raise PriceListNotFound(f"no price list {list_id!r}; known: {', '.join(sorted(lists))}",
                                param="price_list")
    return lists[list_id]


def configured_price_lists(paths: Iterable[str | Path]) -> dict[str, PriceList]:
    """The lists billing can use: the shipped ones and every list in the operator's files
    (`[billing] price_lists`); a file that does not load is a ConfigError naming it."""
    lists = builtin_price_lists()
    for path in paths:
        try:
            lists.update(load_price_lists(Path(path).expanduser()))
        except ManxueError as exc:
            raise ConfigError(f"{path}: {exc.message}") from None
    return lists


def load_price_lists(path: str | Path) -> dict[str, PriceList]:
    """Every list in an operator's TOML file; `base`/`merge` may name shipped lists."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read price list file {p}: {exc.strerror or exc}") from None
    lists = read_price_lists(text, builtin_price_lists(), str(p))
    if not lists:
        raise ConfigError(f"{p}: no [[list]] table found")
    return lists


def load_price_list(path: str | Path, list_id: str | None = None) -> PriceList:
    """The one list in `path` (or the one named `list_id` when the file holds several)."""
    lists = load_price_lists(path)
    if list_id is None:
        if len(lists) != 1:
            raise ConfigError(f"{path}: holds {len(lists)} lists ({', '.join(lists)}); "
                              "name the one you want")
        return next(iter(lists.values()))
    if list_id not in lists:
        raise ConfigError(f"{path}: no list {list_id!r}; it holds {', '.join(lists)}")
    return lists[list_id]
