"""Prometheus metrics, one registry per process, exposed at /metrics."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
                    120, 300, 600)


class Metrics:
    """Every metric the gateway exports; label children are cached off the hot path."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "manxue_requests", "HTTP requests answered", ["route", "status"], registry=r)
        self.latency = Histogram(
            "manxue_request_seconds", "Time to the last byte of an answer", ["route"],
            buckets=_LATENCY_BUCKETS, registry=r)
        self.first_byte = Histogram(
            "manxue_first_byte_seconds", "Time to the first byte from an upstream", ["deployment"],
            buckets=_LATENCY_BUCKETS, registry=r)
        self.upstream_errors = Counter(
            "manxue_upstream_errors", "Failed upstream attempts", ["deployment", "reason"],
            registry=r)
        self.retries = Counter(
            "manxue_retries", "Attempts beyond a request's first", ["deployment"], registry=r)
        self.hedges = Counter("manxue_hedges", "Hedged second attempts started", ["model"],
                              registry=r)
        self.breaker_state = Gauge(
            "manxue_breaker_state", "Circuit breaker: 0 closed, 1 half-open, 2 open",
            ["deployment"], registry=r)
        self.in_flight = Gauge(
            "manxue_in_flight", "Requests in flight per deployment", ["deployment"], registry=r)
        self.tokens = Counter(
            "manxue_tokens", "Tokens served", ["model", "kind"], registry=r)
        self.stream_errors = Counter(
            "manxue_stream_errors", "Streams ended by an error event after the first byte",
            ["deployment"], registry=r)
        self.unbilled = Counter(
            "manxue_unbilled", "Usage an upstream reported beyond what its request reserved, "
            "left uncharged so that no prepaid balance or budget is overdrawn (currency units)",
            ["currency"], registry=r)
        self._children: dict[tuple[Any, ...], Any] = {}

    def child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        c = self._children.get(key)
        if c is None:
            c = self._children[key] = metric.labels(*labels)
        return c

    def render(self) -> bytes:
        return generate_latest(self.registry)
