"""Times in UTC, the one zone manxue stores and computes in.

A datetime is brought to UTC by one of two functions, which differ only in what a naive time
(one without a zone) is taken to mean:

- `assume_utc`: a naive time is read as UTC. For what manxue itself stored (SQLite keeps no
  zone; the ledger's times are naive UTC text) and for the command-line and query options
  documented as "no offset means UTC".
- `require_zone`: a naive time is refused, since its meaning would depend on the machine. For
  times that say when prices apply (price lists, plans, traffic files).

Either way an aware time is converted to UTC (the same instant). Shared vocabulary, importable
from every part of manxue: it stands on the standard library and `manxue.errors` only.
"""

from __future__ import annotations

from datetime import UTC, datetime

from manxue.errors import InvalidParameters


def assume_utc(when: datetime) -> datetime:
    """`when` in UTC; a naive time is read as UTC."""
    return when.replace(tzinfo=UTC) if when.utcoffset() is None else when.astimezone(UTC)


def require_zone(when: datetime, what: str = "time") -> datetime:
    """`when` in UTC; a naive time is refused with InvalidParameters naming it as `what`."""
    if when.utcoffset() is None:
        raise InvalidParameters(f"{what} {when.isoformat()} has no time zone; give an offset "
                                "(e.g. 2025-02-27T04:00:00Z)")
    return when.astimezone(UTC)
