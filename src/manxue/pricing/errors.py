"""Pricing errors: both are `InvalidParameters` (422), so a client sees OpenAI error JSON."""

from __future__ import annotations

from manxue.errors import InvalidParameters


class PriceListNotFound(InvalidParameters):
    """No price list has the requested id."""

    code = "price_list_not_found"


class PriceNotFound(InvalidParameters):
    """The price list has no price for this model at this time."""

    code = "price_not_found"
