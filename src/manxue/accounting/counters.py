"""Live admission state per key: rate buckets, requests in flight, reservations, spending.

One process keeps it in memory (`LocalCounters`); several gateway processes share it in Redis
(`manxue.accounting.redis_counters.RedisCounters`) with the same rules:

- RPM and TPM are token buckets holding a minute's worth, refilled continuously. A request
  takes one RPM token at admission; its actual tokens are taken from the TPM bucket when it
  settles (the bucket may go below zero; new requests wait until it is positive again).
- Concurrency counts admitted requests not yet settled.
- A prepaid key admits a request only if credits − spent − reserved ≥ the request's maximum
  possible cost, which is then reserved until the request settles at its actual cost. Spending
  therefore never exceeds credits while actual cost ≤ reserved cost (see docs/billing.md).
- Daily and monthly budgets (UTC calendar) are checked the same way against what was spent
  in the current period plus what is reserved.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Limits:
    rpm: int | None = None
    tpm: int | None = None
    max_concurrency: int | None = None
    credits_nano: int | None = None  # None: not prepaid, no balance check
    daily_budget_nano: int | None = None
    monthly_budget_nano: int | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str  # rpm | tpm | concurrency | balance | daily_budget | monthly_budget
    retry_after: float | None = None


class Counters(Protocol):
    async def admit(self, key_id: str, req_id: str, reserve_nano: int, limits: Limits,
                    ttl: float) -> Refusal | None: ...

    async def settle(self, key_id: str, req_id: str, cost_nano: int, tokens: int,
                     limits: Limits) -> None: ...

    async def load_spent(self, total: dict[str, int], day: dict[str, int],
                         month: dict[str, int]) -> None: ...

    async def spent(self, key_id: str) -> int: ...

    async def close(self) -> None: ...


_period_cache: tuple[int, tuple[str, str]] = (-1, ("", ""))


def period_keys(now: datetime) -> tuple[str, str]:
    """The UTC day and month of `now` as "YYYYMMDD", "YYYYMM" (cached per second)."""
    return period_keys_at(now.timestamp())


def period_keys_at(ts: float) -> tuple[str, str]:
    """`period_keys` for a POSIX time."""
    global _period_cache
    second = int(ts)
    if _period_cache[0] != second:
        day = time.strftime("%Y%m%d", time.gmtime(second))
        _period_cache = (second, (day, day[:6]))
    return _period_cache[1]


def day_end(ts: float) -> float:
    """The POSIX time at which the UTC day holding `ts` ends (POSIX days are 86,400 s)."""
    return (ts // 86_400 + 1) * 86_400


def seconds_to_period_end(now: datetime, monthly: bool) -> float:
    if monthly:
        nxt = (now.replace(day=1) + timedelta(days=32)).replace(day=1, hour=0, minute=0, second=0,
                                                                 microsecond=0)
    else:
        nxt = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (nxt - now).total_seconds()


@dataclass(slots=True)
class _Bucket:
    """A token bucket holding a minute's worth, refilled continuously."""

    level: float
    at: float

    def refill(self, capacity: int, now: float) -> float:
        level = self.level + (now - self.at) * capacity / 60.0
        self.level = level = level if level < capacity else float(capacity)
        self.at = now
        return level


@dataclass(slots=True)
class _KeyState:
    rpm: _Bucket | None = None
    tpm: _Bucket | None = None
    inflight: dict[str, int] = field(default_factory=dict)
    reserved: int = 0  # the sum of `inflight`
    spent: int = 0
    day: str = ""  # the UTC day ("YYYYMMDD") that `day_spent` counts, and the month likewise
    day_spent: int = 0
    month: str = ""
    month_spent: int = 0
    day_ends: float = 0.0  # POSIX time at which `day` ends: until then a cost adds to both sums

    def add_spent(self, cost_nano: int, now: float) -> None:
        """Count a cost in the UTC day and month of `now` (those of the last cost, or new ones)."""
        day, month = period_keys_at(now)
        self.day_spent = self.day_spent + cost_nano if self.day == day else cost_nano
        self.month_spent = self.month_spent + cost_nano if self.month == month else cost_nano
        self.day, self.month = day, month
        self.day_ends = day_end(now)


class LocalCounters:
    """The in-process implementation; every call is O(1) and never waits."""

    def __init__(self) -> None:
        self._keys: dict[str, _KeyState] = {}

    def _state(self, key_id: str) -> _KeyState:
        st = self._keys.get(key_id)
        if st is None:
            st = self._keys[key_id] = _KeyState()
        return st

    async def admit(self, key_id: str, req_id: str, reserve_nano: int, limits: Limits,
                    ttl: float) -> Refusal | None:
        return self.admit_now(key_id, req_id, reserve_nano, limits, ttl)

    def admit_now(self, key_id: str, req_id: str, reserve_nano: int, limits: Limits,
                  ttl: float) -> Refusal | None:
        """`admit` without a coroutine: nothing here waits."""
        st = self._keys.get(key_id) or self._state(key_id)
        if limits.max_concurrency is not None and len(st.inflight) >= limits.max_concurrency:
            return Refusal("concurrency", 1.0)
        rpm, tpm = limits.rpm, limits.tpm
        if rpm is not None or tpm is not None:
            mono = time.monotonic()
            if rpm is not None:
                bucket = st.rpm
                if bucket is None:
                    bucket = st.rpm = _Bucket(float(rpm), mono)
                # `bucket.refill(rpm, mono)`, inlined: this runs on every request of such a key
                level = bucket.level + (mono - bucket.at) * rpm / 60.0
                bucket.level = level = level if level < rpm else float(rpm)
                bucket.at = mono
                if level < 1:
                    return Refusal("rpm", (1 - level) * 60.0 / rpm)
            if tpm is not None:
                bucket = st.tpm
                if bucket is None:
                    bucket = st.tpm = _Bucket(float(tpm), mono)
                if bucket.refill(tpm, mono) < 1:
                    return Refusal("tpm", (1 - bucket.level) * 60.0 / tpm)
        reserved = st.reserved
        if limits.credits_nano is not None and \
                limits.credits_nano - st.spent - reserved < reserve_nano:
            return Refusal("balance")
        if limits.daily_budget_nano is not None or limits.monthly_budget_nano is not None:
            refusal = self._budgets(st, reserved + reserve_nano, limits)
            if refusal is not None:
                return refusal
        if st.rpm is not None:
            st.rpm.level -= 1
        st.inflight[req_id] = reserve_nano
        st.reserved = reserved + reserve_nano
        return None

    @staticmethod
    def _budgets(st: _KeyState, committed: int, limits: Limits) -> Refusal | None:
        now = datetime.now(UTC)
        day, month = period_keys(now)
        if limits.daily_budget_nano is not None:
            spent_today = st.day_spent if st.day == day else 0
            if spent_today + committed > limits.daily_budget_nano:
                return Refusal("daily_budget", seconds_to_period_end(now, False))
        if limits.monthly_budget_nano is not None:
            spent_month = st.month_spent if st.month == month else 0
            if spent_month + committed > limits.monthly_budget_nano:
                return Refusal("monthly_budget", seconds_to_period_end(now, True))
        return None

    async def settle(self, key_id: str, req_id: str, cost_nano: int, tokens: int,
                     limits: Limits) -> None:
        self.settle_now(key_id, req_id, cost_nano, tokens, limits)

    def settle_now(self, key_id: str, req_id: str, cost_nano: int, tokens: int,
                   limits: Limits) -> None:
        """`settle` without a coroutine: nothing here waits."""
        st = self._keys.get(key_id) or self._state(key_id)
        st.reserved -= st.inflight.pop(req_id, 0)
        if cost_nano:
            st.spent += cost_nano
            now = time.time()
            if now < st.day_ends:  # still the day (and so the month) of the last cost
                st.day_spent += cost_nano
                st.month_spent += cost_nano
            else:
                st.add_spent(cost_nano, now)
        tpm = limits.tpm
        if tpm is not None and tokens:
            mono = time.monotonic()
            bucket = st.tpm
            if bucket is None:
                bucket = st.tpm = _Bucket(float(tpm), mono)
            bucket.level = bucket.refill(tpm, mono) - tokens

    async def load_spent(self, total: dict[str, int], day: dict[str, int],
                         month: dict[str, int]) -> None:
        now = time.time()
        d, m = period_keys_at(now)
        for key_id, spent in total.items():
            st = self._state(key_id)
            st.spent = spent
            st.day, st.day_spent = d, day.get(key_id, 0)
            st.month, st.month_spent = m, month.get(key_id, 0)
            st.day_ends = day_end(now)

    async def spent(self, key_id: str) -> int:
        return self._state(key_id).spent

    async def close(self) -> None:
        return None
