"""A deployment at run time: its provider, its breaker and the numbers strategies read."""

from __future__ import annotations

from manxue.gateway.breaker import CircuitBreaker
from manxue.providers.base import Provider
from manxue.settings import BreakerSettings, DeploymentSettings

_EWMA = 0.2


class Deployment:
    __slots__ = ("breaker", "in_flight", "latency_ewma", "provider", "settings")

    def __init__(self, provider: Provider, breaker: BreakerSettings) -> None:
        self.provider = provider
        self.settings: DeploymentSettings = provider.settings
        self.breaker = CircuitBreaker(breaker.failures, breaker.cooldown)
        self.in_flight = 0
        self.latency_ewma: float | None = None

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def upstream_model(self) -> str:
        return self.settings.upstream_model or self.settings.model

    def observe_first_byte(self, seconds: float) -> None:
        prev = self.latency_ewma
        self.latency_ewma = seconds if prev is None else prev + _EWMA * (seconds - prev)
