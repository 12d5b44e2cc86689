"""Parsing of user-given values shared by the CLI and the HTTP route."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation

from manxue.errors import InvalidParameters
from manxue.timeutil import require_zone


def parse_money(value: str, name: str = "gpu_hour") -> Decimal:
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise InvalidParameters(f"{name} must be a number, got {value!r}", param=name) from None
    if not amount.is_finite() or amount < 0:
        raise InvalidParameters(f"{name} must be >= 0", param=name)
    return amount


def parse_time(value: str | None, name: str = "at") -> datetime | None:
    if value is None:
        return None
    try:
        return require_zone(datetime.fromisoformat(value), name)
    except ValueError:
        raise InvalidParameters(f"{name} must be ISO 8601 with an offset, e.g. "
                                "2025-02-27T04:00:00Z", param=name) from None
