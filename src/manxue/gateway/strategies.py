"""Order the deployments of one priority group: weighted choice, least latency, least busy."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from manxue.gateway.deployment import Deployment

Strategy = Callable[[Sequence[Deployment]], list[Deployment]]


def weighted(group: Sequence[Deployment]) -> list[Deployment]:
    """A weighted random order: the first pick follows the weights, then the rest likewise."""
    if len(group) == 1:
        return [group[0]]
    # Efraimidis–Spirakis: sort by u^(1/w), a weighted sample without replacement.
    keyed = [(random.random() ** (1.0 / d.settings.weight), i) for i, d in enumerate(group)]
    keyed.sort(reverse=True)
    return [group[i] for _, i in keyed]


def least_latency(group: Sequence[Deployment]) -> list[Deployment]:
    """Fastest first byte first; deployments never measured go first so they get measured."""
    return sorted(group, key=lambda d: -1.0 if d.latency_ewma is None else d.latency_ewma)


def least_busy(group: Sequence[Deployment]) -> list[Deployment]:
    """Fewest requests in flight first, weights breaking ties."""
    return sorted(group, key=lambda d: (d.in_flight / d.settings.weight, -d.settings.weight))


STRATEGIES: dict[str, Strategy] = {
    "weighted": weighted,
    "least-latency": least_latency,
    "least-busy": least_busy,
}
