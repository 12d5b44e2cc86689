"""Money as exact Decimals, stored as integer nano-units (1e-9 of the currency).

Rounding rule (the one of `manxue.pricing.units.cost`): a request's cost is computed exactly,
as `(hit × price_hit + miss × price_miss + output × price_output) / 1,000,000` with prices per
million tokens, and rounded once, half to even, to 1e-8 of the currency unit. The ledger row
keeps the token counts and unit prices, so the cost can be recomputed from it.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

NANO = 1_000_000_000
_QUANTUM = Decimal("0.00000001")


def to_nano(amount: Decimal | int | str) -> int:
    return int((Decimal(amount) * NANO).to_integral_value(ROUND_HALF_EVEN))


def from_nano(nano: int) -> Decimal:
    return Decimal(nano).scaleb(-9)


def cost_nano(hit: int, miss: int, output: int, price_hit: Decimal, price_miss: Decimal,
              price_output: Decimal) -> int:
    """The cost of a request in nano-units, prices given per million tokens."""
    exact = (hit * price_hit + miss * price_miss + output * price_output) / 1_000_000
    return int(exact.quantize(_QUANTUM, ROUND_HALF_EVEN) * NANO)


def text(nano: int) -> str:
    """An exact amount as plain decimal text without trailing zeros: "10", "0.00012345"."""
    d = from_nano(nano).normalize()
    return f"{d:f}" if d else "0"


def fmt(nano: int, currency: str) -> str:
    """For people: 12.345678 USD (trailing zeros trimmed, at least two decimals)."""
    d = from_nano(nano).quantize(Decimal("0.000001"), ROUND_HALF_EVEN).normalize()
    text = f"{d:f}"
    if "." not in text:
        text += ".00"
    elif len(text.split(".")[1]) == 1:
        text += "0"
    return f"{text} {currency}"
