"""Per-deployment circuit breaker: closed → open after repeated failures → half-open probe."""

from __future__ import annotations

import time
from enum import IntEnum


class BreakerState(IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    """Counts consecutive failures; while open, the deployment costs nothing to skip.

    After `cooldown` seconds open, one request is let through as a probe (half-open): its
    success closes the breaker, its failure opens it again for another cooldown. An upstream's
    Retry-After also holds the deployment back until that moment, without counting as open.
    """

    __slots__ = ("_failures", "_opened_at", "_probe_out", "_rest_until", "cooldown",
                 "failures_to_open", "state")

    def __init__(self, failures_to_open: int, cooldown: float) -> None:
        self.failures_to_open = failures_to_open
        self.cooldown = cooldown
        self.state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_out = False
        self._rest_until = 0.0

    def allow(self, now: float | None = None) -> bool:
        """May a request go to this deployment now? Half-open admits one probe at a time."""
        now = time.monotonic() if now is None else now
        if now < self._rest_until:
            return False
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN:
            if now - self._opened_at < self.cooldown:
                return False
            self.state = BreakerState.HALF_OPEN
            self._probe_out = False
        if self._probe_out:
            return False
        self._probe_out = True
        return True

    def available_in(self, now: float | None = None) -> float:
        """Seconds until `allow` could say yes (0 if it may now)."""
        now = time.monotonic() if now is None else now
        wait = self._rest_until - now
        if self.state is BreakerState.OPEN:
            wait = max(wait, self._opened_at + self.cooldown - now)
        return max(0.0, wait)

    def record_success(self) -> None:
        self._failures = 0
        self._probe_out = False
        self.state = BreakerState.CLOSED

    def record_failure(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._failures += 1
        self._probe_out = False
        if self.state is BreakerState.HALF_OPEN or self._failures >= self.failures_to_open:
            self.state = BreakerState.OPEN
            self._opened_at = now

    def release_probe(self) -> None:
        """A probe ended without a verdict (e.g. the client left): let another probe go."""
        self._probe_out = False

    def rest_for(self, seconds: float, now: float | None = None) -> None:
        """Hold the deployment back for `seconds` (an upstream's Retry-After)."""
        now = time.monotonic() if now is None else now
        self._rest_until = max(self._rest_until, now + seconds)
