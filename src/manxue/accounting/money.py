"""Money as exact Decimals, stored as integer nano-units (1e-9 of the currency).

Rounding rule (the one of `manxue.pricing.units.cost`): a request's cost is computed exactly,
as `(hit × price_hit + miss × price_miss + output × price_output) / 1,000,000` with prices per
million tokens, and rounded once, half to even, to 1e-8 of the currency unit. The ledger row
keeps the token counts and unit prices, so the cost can be recomputed from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal

NANO = 1_000_000_000


def to_nano(amount: Decimal | int | str) -> int:
    return int((Decimal(amount) * NANO).to_integral_value(ROUND_HALF_EVEN))


def from_nano(nano: int) -> Decimal:
    return Decimal(nano).scaleb(-9)


def _exponent(d: Decimal) -> int:
    exp = d.normalize().as_tuple().exponent
    if not isinstance(exp, int):
        raise ValueError(f"a price must be a finite decimal, got {d!r}")
    return exp


@dataclass(frozen=True, slots=True)
class Rates:
    """Per-million-token prices as exact integers over one power of ten: a price is
    `value / 10**scale`. Costing in integers gives the same result as the Decimal rule
    (`manxue.pricing.units.cost`), without Decimal arithmetic on the request path."""

    hit: int
    miss: int
    output: int
    scale: int
    # a total is in 10^-(scale+6) units; nano-cost = round(total / div) × 10 when div > 1,
    # else total × mul (both powers of ten, computed once)
    div: int = field(init=False, repr=False, compare=False)
    mul: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        shift = self.scale - 2  # 10^(scale+6) units → 1e-8 units
        object.__setattr__(self, "div", 10 ** shift if shift > 0 else 1)
        object.__setattr__(self, "mul", 10 ** (1 - shift) if shift <= 0 else 10)

    @classmethod
    def of(cls, hit: Decimal, miss: Decimal, output: Decimal) -> Rates:
        prices = (Decimal(hit), Decimal(miss), Decimal(output))
        scale = max(0, *(-_exponent(p) for p in prices))
        h, m, o = (int(p.scaleb(scale)) for p in prices)  # exact: every digit is kept
        return cls(h, m, o, scale)

    def cost_nano(self, hit: int, miss: int, output: int) -> int:
        """(hit·p_hit + miss·p_miss + output·p_output) / 1e6, rounded half to even to 1e-8
        of the currency unit, in nano-units."""
        total = hit * self.hit + miss * self.miss + output * self.output  # × 10^(scale+6)
        div = self.div
        if div == 1:
            return total * self.mul
        q, r = divmod(total, div)
        if 2 * r > div or (2 * r == div and q & 1):
            q += 1
        return q * 10

    def ceil_nano(self, miss: int, output: int) -> int:
        """An upper bound of `cost_nano(0, miss, output)`, for reservations: the total rounded
        up, not to even (one step cheaper; never below the cost it bounds)."""
        total = miss * self.miss + output * self.output
        div = self.div
        return total * self.mul if div == 1 else -(-total // div) * 10


def cost_nano(hit: int, miss: int, output: int, price_hit: Decimal, price_miss: Decimal,
              price_output: Decimal) -> int:
    """The cost of a request in nano-units, prices given per million tokens."""
    return Rates.of(price_hit, price_miss, price_output).cost_nano(hit, miss, output)


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
