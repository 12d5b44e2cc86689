"""Pick a deployment and get a first byte from it: retry, fail over and hedge.

Everything here happens before the first byte reaches the client; after that the answer is
committed to one deployment and the caller relays it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from manxue.errors import (
    ManxueError,
    ModelNotFound,
    PolicyViolation,
    RateLimited,
    ServiceUnavailable,
    UpstreamError,
)
from manxue.gateway.breaker import BreakerState
from manxue.gateway.deployment import Deployment
from manxue.gateway.strategies import STRATEGIES
from manxue.metrics import Metrics
from manxue.settings import RouterSettings

log = logging.getLogger("manxue.router")

T = TypeVar("T")
Call = Callable[[Deployment], Awaitable[T]]

# Upstream statuses worth another try (elsewhere or later).
RETRYABLE = frozenset({408, 409, 429, 500, 502, 503, 504})
# Statuses that say the deployment itself is misconfigured (its key, balance, model name):
# the client's request may well succeed elsewhere.
DEPLOYMENT_FAULT = frozenset({401, 402, 403, 404})


@dataclass(slots=True)
class Acquired(Generic[T]):
    deployment: Deployment
    result: T
    attempts: int


@dataclass
class _Plan:
    """Shared by the lanes of one request: what is left to try, and what went wrong."""

    queue: deque[tuple[Deployment, int]]
    attempts_left: int
    attempts: int = 0
    errors: list[UpstreamError] = field(default_factory=list)
    skipped_open: list[Deployment] = field(default_factory=list)


class Router:
    def __init__(self, settings: RouterSettings, deployments: Iterable[Deployment],
                 metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.deployments = list(deployments)
        self._strategy = STRATEGIES[settings.strategy]
        self._groups: dict[str, list[list[Deployment]]] = {}
        self._regroup()

    def _regroup(self) -> None:
        groups: dict[str, dict[int, list[Deployment]]] = defaultdict(lambda: defaultdict(list))
        for d in self.deployments:
            groups[d.settings.model][d.settings.priority].append(d)
        self._groups = {m: [g[p] for p in sorted(g)] for m, g in groups.items()}
        for d in self.deployments:
            self._set_breaker_gauge(d)

    def get(self, name: str) -> Deployment | None:
        return next((d for d in self.deployments if d.name == name), None)

    def add(self, dep: Deployment) -> None:
        """Serve a new deployment from the next request on (names are unique)."""
        if self.get(dep.name) is not None:
            raise ValueError(f"deployment {dep.name!r} already exists")
        self.deployments.append(dep)
        self._regroup()

    def remove(self, name: str) -> Deployment | None:
        """Stop routing to a deployment; requests already on it finish. Returns it, if found."""
        dep = self.get(name)
        if dep is not None:
            self.deployments.remove(dep)
            self._regroup()
        return dep

    # ---- what is served -------------------------------------------------------------------
    def models(self) -> list[str]:
        return sorted(self._groups)

    def ready(self) -> bool:
        """At least one deployment whose breaker is not open."""
        now = time.monotonic()
        return any(d.breaker.available_in(now) == 0 for d in self.deployments)

    def check(self, model: str, local_only: bool = False) -> None:
        """Raise the 4xx/503 that `candidates` would, without ordering anything."""
        groups = self._groups.get(model)
        if groups is not None and (not local_only or any(
                d.settings.is_local for g in groups for d in g)):
            return
        self.candidates(model, local_only)

    def candidates(self, model: str, local_only: bool = False) -> list[Deployment]:
        groups = self._groups.get(model)
        if groups is None:
            raise ModelNotFound(
                f"model '{model}' is not served here; GET /v1/models lists the models",
                param="model")
        ordered: list[Deployment] = []
        for group in groups:
            if local_only:
                group = [d for d in group if d.settings.is_local]
            if group:
                ordered.extend(self._strategy(group))
        if not ordered:
            raise PolicyViolation(
                f"model '{model}' has no local deployment, and this request may not leave the "
                "machine (privacy = local)")
        return ordered

    # ---- getting a first byte ----------------------------------------------------------------
    async def acquire(self, model: str, call: Call[T], local_only: bool = False) -> Acquired[T]:
        """Run `call` on deployments in routing order until one gives a first byte."""
        cands = self.candidates(model, local_only)
        rounds = 1 + self.settings.retries_per_deployment
        plan = _Plan(
            queue=deque((d, r) for r in range(rounds) for d in cands),
            attempts_left=self.settings.max_attempts,
        )
        hedge_after = self.settings.hedge_after
        if hedge_after <= 0 or len(cands) < 2:
            return await self._lane(plan, call)
        return await self._hedged(model, plan, call, hedge_after)

    async def _hedged(self, model: str, plan: _Plan, call: Call[T], after: float) -> Acquired[T]:
        first = asyncio.create_task(self._lane(plan, call))
        lanes = {first}
        try:
            done, _ = await asyncio.wait(lanes, timeout=after)
            if not done and plan.queue:
                self.metrics.child(self.metrics.hedges, model).inc()
                lanes.add(asyncio.create_task(self._lane(plan, call)))
            pending = set(lanes)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                winners = [t for t in done if not t.cancelled() and t.exception() is None]
                if winners:
                    for loser in winners[1:]:
                        await _discard(loser.result())
                    return winners[0].result()
            raise self._final_error(model, plan)
        finally:
            for t in lanes:
                if not t.done():
                    t.cancel()
            await asyncio.gather(*lanes, return_exceptions=True)

    async def _lane(self, plan: _Plan, call: Call[T]) -> Acquired[T]:
        model = ""
        while plan.queue and plan.attempts_left > 0:
            dep, rnd = plan.queue.popleft()
            model = dep.settings.model
            wait = dep.breaker.available_in()
            if wait > 0:
                if dep.breaker.state is BreakerState.CLOSED and rnd > 0 \
                        and wait <= self.settings.retry_after_max and not plan.queue:
                    # honour Retry-After when nothing else is left (timers may fire a hair early)
                    await asyncio.sleep(wait + 0.005)
                else:
                    plan.skipped_open.append(dep)
                    continue
            elif rnd > 0:
                await asyncio.sleep(self._backoff(rnd))
            if not dep.breaker.allow():
                plan.skipped_open.append(dep)
                continue
            plan.attempts_left -= 1
            plan.attempts += 1
            if plan.attempts > 1:
                self.metrics.child(self.metrics.retries, dep.name).inc()
            result = await self._attempt(plan, dep, call)
            if result is not None:
                return Acquired(dep, result, plan.attempts)
        raise self._final_error(model, plan)

    async def _attempt(self, plan: _Plan, dep: Deployment, call: Call[T]) -> T | None:
        m = self.metrics
        dep.in_flight += 1
        m.child(m.in_flight, dep.name).inc()
        t0 = time.perf_counter()
        try:
            result = await call(dep)
        except UpstreamError as exc:
            self.release(dep)
            if exc.status not in RETRYABLE and exc.status not in DEPLOYMENT_FAULT:
                dep.breaker.record_success()  # the upstream is fine; the request is not
                self._set_breaker_gauge(dep)
                log.info("%s (relayed to the client)", exc.message)
                raise
            self._record_failure(dep, exc)
            plan.errors.append(exc)
            if exc.status in DEPLOYMENT_FAULT:  # retrying its key or model will not help
                plan.queue = deque(e for e in plan.queue if e[0] is not dep)
            return None
        except BaseException:
            self.release(dep)
            dep.breaker.release_probe()
            raise
        elapsed = time.perf_counter() - t0
        dep.observe_first_byte(elapsed)
        m.child(m.first_byte, dep.name).observe(elapsed)
        if dep.breaker.state is not BreakerState.CLOSED:
            dep.breaker.record_success()
            self._set_breaker_gauge(dep)
        else:
            dep.breaker.record_success()
        return result

    def release(self, dep: Deployment) -> None:
        """The request on `dep` is over (the caller calls this once a relayed answer ends)."""
        dep.in_flight -= 1
        self.metrics.child(self.metrics.in_flight, dep.name).dec()

    def _record_failure(self, dep: Deployment, exc: UpstreamError) -> None:
        # the same words as the error message: "timeout", "unreachable", else the HTTP status
        self.metrics.child(self.metrics.upstream_errors, dep.name, _reason(exc)).inc()
        log.warning("%s", exc.message)
        dep.breaker.record_failure()
        if exc.retry_after:
            dep.breaker.rest_for(exc.retry_after)
        self._set_breaker_gauge(dep)

    def _set_breaker_gauge(self, dep: Deployment) -> None:
        self.metrics.child(self.metrics.breaker_state, dep.name).set(int(dep.breaker.state))

    def _backoff(self, rnd: int) -> float:
        s = self.settings
        delay: float = min(s.backoff_max, s.backoff_base * 2.0 ** (rnd - 1))
        return delay * random.uniform(0.5, 1.5)

    def _final_error(self, model: str, plan: _Plan) -> ManxueError:
        if not plan.errors:
            wait = min((d.breaker.available_in() for d in plan.skipped_open), default=1.0)
            return ServiceUnavailable(
                f"model '{model}' is unavailable right now: every deployment is paused after "
                f"repeated failures; retry in {max(1, round(wait))} s",
                retry_after=max(1.0, wait))
        reasons = ", ".join(_reason(e) for e in plan.errors)
        last = plan.errors[-1]
        if all(e.status == 429 for e in plan.errors):
            return RateLimited(
                f"model '{model}' is rate limited upstream ({plan.attempts} attempts: {reasons}); "
                "retry after the indicated delay",
                retry_after=last.retry_after or 1.0)
        retry = min((e.retry_after for e in plan.errors if e.retry_after), default=1.0)
        return ServiceUnavailable(
            f"model '{model}' is busy or unavailable ({plan.attempts} attempts: {reasons}); "
            "retry after a brief wait", retry_after=retry)


def _reason(e: UpstreamError) -> str:
    if e.status == 504:
        return "timeout"
    if e.code == "upstream_unreachable":
        return "unreachable"
    return str(e.status)


async def _discard(result: Any) -> None:
    close = getattr(getattr(result, "result", None), "aclose", None)
    if close is not None:
        await close()
