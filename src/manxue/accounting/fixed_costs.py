"""Fixed costs of self-hosted engines (GPU-hours) in margin reports.

A deployment with `cost_per_hour` costs that much for every hour it runs, whatever it serves.
The ledger cannot know when an engine ran, so a report charges each such deployment for the
hours of the report's window: from `since` to `until` where the report gives them, otherwise
from that deployment's first to its last request in the selection. Charged by UTC day for
`by=day`, as one sum for `by=deployment`; totals by tenant, key or model carry no fixed cost
(there is no rule to split an engine's hours between its customers).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import Engine, func, select

from manxue.accounting.money import to_nano
from manxue.settings import DeploymentSettings
from manxue.store.tables import ledger
from manxue.timeutil import assume_utc

_MICROS_PER_HOUR = Decimal(3_600_000_000)
_DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class FixedCost:
    per_hour: Decimal
    currency: str


def fixed_costs(deployments: Iterable[DeploymentSettings], currency: str) -> dict[str, FixedCost]:
    """The deployments that cost by the hour, by name (`cost_currency`, else `currency`)."""
    return {d.name: FixedCost(d.cost_per_hour, d.cost_currency or currency)
            for d in deployments if d.cost_per_hour is not None}


def accrued_nano(cost: FixedCost, start: datetime, end: datetime) -> int:
    """What `cost` comes to over [start, end), in nano-units (rounded once, half to even)."""
    return to_nano(cost.per_hour * _micros(start, end) / _MICROS_PER_HOUR)


def windows(engine: Engine, names: Iterable[str], since: datetime | None,
            until: datetime | None) -> dict[str, tuple[datetime, datetime]]:
    """The span each deployment is charged for: [since, until), an open end closed by its
    first or last request in that range; a deployment with an open end and no request in
    the range is not charged."""
    names = list(names)
    if not names:
        return {}
    q = select(ledger.c.deployment, func.min(ledger.c.at), func.max(ledger.c.at)) \
        .where(ledger.c.deployment.in_(names)).group_by(ledger.c.deployment)
    if since is not None:
        q = q.where(ledger.c.at >= since)
    if until is not None:
        q = q.where(ledger.c.at < until)
    with engine.connect() as c:
        seen = {r[0]: (_utc(r[1]), _utc(r[2])) for r in c.execute(q)}
    out: dict[str, tuple[datetime, datetime]] = {}
    for name in names:
        first, last = seen.get(name, (None, None))
        start, end = _utc(since) or first, _utc(until) or last
        if start is not None and end is not None and start < end:
            out[name] = (start, end)
    return out


def days(start: datetime, end: datetime) -> dict[str, tuple[datetime, datetime]]:
    """[start, end) cut at UTC midnights, by day ("YYYY-MM-DD")."""
    out: dict[str, tuple[datetime, datetime]] = {}
    day = start.replace(hour=0, minute=0, second=0, microsecond=0)
    while day < end:
        nxt = day + _DAY
        out[day.date().isoformat()] = (max(start, day), min(end, nxt))
        day = nxt
    return out


def _utc(dt: datetime | str | None) -> datetime | None:
    if dt is None:
        return None
    if isinstance(dt, str):  # SQLite hands back min()/max() of a timestamp as text
        dt = datetime.fromisoformat(dt)
    return assume_utc(dt)


def hours(start: datetime, end: datetime) -> Decimal:
    """The hours of [start, end) (none when it is empty)."""
    return _micros(start, end) / _MICROS_PER_HOUR


def _micros(start: datetime, end: datetime) -> Decimal:
    return Decimal(max(end - start, timedelta(0)) // timedelta(microseconds=1))
