"""Price lists as data, exact Decimal costs, markups: the vocabulary billing and planning share."""

from manxue.pricing.catalog import (
    MONEY_QUANTUM,
    PriceEntry,
    PriceList,
    Quote,
    TokenCounts,
    UnitPrices,
    builtin_price_lists,
    cost,
    get_price_list,
    load_price_list,
    load_price_lists,
    markup,
    markup_prices,
    merge,
    price_at,
    quote,
)
from manxue.pricing.errors import PriceListNotFound, PriceNotFound

__all__ = [
    "MONEY_QUANTUM", "PriceEntry", "PriceList", "PriceListNotFound", "PriceNotFound", "Quote",
    "TokenCounts", "UnitPrices", "builtin_price_lists", "cost", "get_price_list", "load_price_list",
    "load_price_lists", "markup", "markup_prices", "merge", "price_at", "quote",
]
