"""Unit prices, token counts (`TokenCounts`) and the one rounding rule for money.

Prices are per 1,000,000 tokens in the price list's currency. Reasoning tokens are output.
Money is `Decimal` end to end: token counts are exact integers, unit prices are the decimal
strings of the price list, and the only rounding happens in `cost`:

    cost = (hit × hit_price + miss × miss_price + output × output_price) / 1,000,000
    quantized to 1e-8 of the currency unit (`MONEY_QUANTUM`), ROUND_HALF_EVEN.

The product before the division is exact (at most 40 significant digits are kept while
computing, far more than any real count × price needs), so a request's cost is a pure
function of its usage and its unit prices, and can be recomputed from a ledger row.
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from manxue.errors import InvalidParameters

MONEY_QUANTUM = Decimal("0.00000001")
PER_TOKENS = 1_000_000
_PREC = 40


@dataclass(frozen=True, slots=True)
class UnitPrices:
    """Prices per 1M tokens: cache-hit input, cache-miss input, output (reasoning included)."""

    hit: Decimal
    miss: Decimal
    output: Decimal
    currency: str

    def __post_init__(self) -> None:
        for name in ("hit", "miss", "output"):
            value = getattr(self, name)
            if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
                raise InvalidParameters(f"{name} price must be a finite Decimal >= 0, got {value!r}")
        if not self.currency:
            raise InvalidParameters("a currency code is required (e.g. USD, CNY)")

    def scaled(self, factor: Decimal) -> UnitPrices:
        """Every price times `factor`, unrounded (e.g. Decimal('0.5') for 50% off)."""
        return UnitPrices(self.hit * factor, self.miss * factor, self.output * factor, self.currency)

    def as_dict(self) -> dict[str, str]:
        return {"hit": str(self.hit), "miss": str(self.miss), "output": str(self.output),
                "currency": self.currency}


@dataclass(frozen=True, slots=True)
class TokenCounts:
    """Token counts of one request or of an aggregate: cache-hit input, cache-miss input, output.

    What a price applies to; the usage object of the API (prompt/completion tokens, as sent on
    the wire) is `manxue.protocol.usage.Usage`."""

    hit: int = 0
    miss: int = 0
    output: int = 0

    def __post_init__(self) -> None:
        for name in ("hit", "miss", "output"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InvalidParameters(f"{name} tokens must be an int >= 0, got {value!r}")

    @property
    def input(self) -> int:
        return self.hit + self.miss

    def __add__(self, other: TokenCounts) -> TokenCounts:
        return TokenCounts(self.hit + other.hit, self.miss + other.miss, self.output + other.output)


def raw_cost(usage: TokenCounts, prices: UnitPrices) -> Decimal:
    """The exact cost before rounding (for aggregates that round once at the end)."""
    with decimal.localcontext(prec=_PREC):
        total = usage.hit * prices.hit + usage.miss * prices.miss + usage.output * prices.output
        return total / PER_TOKENS


def round_money(amount: Decimal) -> Decimal:
    """Quantize to `MONEY_QUANTUM` (1e-8 of the currency unit) with ROUND_HALF_EVEN."""
    with decimal.localcontext(prec=_PREC):
        return amount.quantize(MONEY_QUANTUM, rounding=ROUND_HALF_EVEN)


def cost(usage: TokenCounts, prices: UnitPrices) -> Decimal:
    """Cost of `usage` at `prices`, in the prices' currency.

    Rounding rule: the exact sum (hit·p_hit + miss·p_miss + output·p_output) / 1e6 is
    quantized once to 1e-8 of the currency unit with ROUND_HALF_EVEN (banker's rounding).
    """
    return round_money(raw_cost(usage, prices))


def markup_prices(prices: UnitPrices, percent: Decimal) -> UnitPrices:
    """List price + `percent` % (Decimal('20') → × 1.2), unrounded."""
    if not isinstance(percent, Decimal) or not percent.is_finite() or percent <= -100:
        raise InvalidParameters(f"markup percent must be a Decimal > -100, got {percent!r}")
    return prices.scaled(1 + percent / 100)
