"""The circuit breaker and the routing strategies, in process: no sockets, no sleeps for time.

The breaker takes the time as an argument, and the router's breakers read a clock the tests
move by hand. Upstreams are `FakeProvider`s: the Provider protocol of providers/base.py over a
script of canned completions and `UpstreamError`s (httpx's MockTransport idea, one level up).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter, deque
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from manxue.errors import ServiceUnavailable, UpstreamError
from manxue.gateway import breaker as breaker_module
from manxue.gateway import strategies
from manxue.gateway.breaker import BreakerState, CircuitBreaker
from manxue.gateway.deployment import Deployment
from manxue.gateway.router import Router
from manxue.metrics import Metrics
from manxue.providers.base import BufferedStream, ChunkStream, Completion, KeepAliveHook
from manxue.settings import BreakerSettings, DeploymentSettings, RouterSettings
from tests.helpers import wait_until_async

MODEL = "chat"


# ---- an in-process upstream ---------------------------------------------------------------


def answer(text: str) -> Completion:
    data = {"object": "chat.completion", "model": MODEL,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop"}]}
    return Completion(orjson.dumps(data), data)


def busy(status: int = 503, **kw: Any) -> UpstreamError:
    return UpstreamError(f"fake upstream answered {status}", status=status, **kw)


class FakeProvider:
    """Answers each call with the next scripted item (a Completion, or an UpstreamError it
    raises), then with `default`; `delay` seconds before answering, and `gate`, when set, is
    waited for first (to hold a request in flight)."""

    def __init__(self, name: str, *, priority: int = 0, weight: float = 1.0,
                 delay: float = 0.0, default: Completion | UpstreamError | None = None) -> None:
        self.settings = DeploymentSettings(name=name, model=MODEL, base_url="http://fake.invalid",
                                           priority=priority, weight=weight)
        self.script: deque[Completion | UpstreamError] = deque()
        self.default = default if default is not None else answer(f"from {name}")
        self.delay = delay
        self.gate: asyncio.Event | None = None
        self.calls = 0

    def then(self, *items: Completion | UpstreamError) -> FakeProvider:
        self.script.extend(items)
        return self

    async def complete(self, body: dict[str, Any]) -> Completion:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.delay:
            await asyncio.sleep(self.delay)
        item = self.script.popleft() if self.script else self.default
        if isinstance(item, UpstreamError):
            raise item
        return item

    async def stream(self, body: dict[str, Any], on_keepalive: KeepAliveHook | None) -> ChunkStream:
        first = await self.complete(body)

        async def nothing_more() -> Any:
            return
            yield

        return BufferedStream(first.body, nothing_more())

    async def close(self) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        return {"kind": "fake"}


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The breakers' clock (the breaker module reads `time.monotonic`)."""
    c = Clock()
    monkeypatch.setattr(breaker_module, "time", SimpleNamespace(monotonic=c))
    return c


@pytest.fixture
def seeded(monkeypatch: pytest.MonkeyPatch) -> None:
    """The strategies draw from a seeded generator, not the process-wide one."""
    monkeypatch.setattr(strategies, "random", random.Random(20260501))


def deployments(*providers: FakeProvider, failures: int = 3, cooldown: float = 30.0
                ) -> list[Deployment]:
    return [Deployment(p, BreakerSettings(failures=failures, cooldown=cooldown)) for p in providers]


def router(deps: list[Deployment], **settings: Any) -> Router:
    settings.setdefault("backoff_base", 0.0)
    settings.setdefault("retries_per_deployment", 0)
    return Router(RouterSettings(**settings), deps, Metrics())


def ask(r: Router) -> str:
    """One request through the router; the name of the deployment that answered."""
    async def call(dep: Deployment) -> Completion:
        return await dep.provider.complete({"model": MODEL})

    got = asyncio.run(r.acquire(MODEL, call))
    r.release(got.deployment)
    return got.deployment.name


def provider(dep: Deployment) -> FakeProvider:
    assert isinstance(dep.provider, FakeProvider)
    return dep.provider


# ---- the breaker on its own ------------------------------------------------------------------


def test_breaker_opens_after_n_consecutive_failures() -> None:
    b = CircuitBreaker(failures_to_open=3, cooldown=10.0)
    b.record_failure(now=0.0)
    b.record_failure(now=0.0)
    assert b.state is BreakerState.CLOSED and b.allow(now=0.0)
    b.record_failure(now=0.0)
    assert b.state is BreakerState.OPEN
    assert not b.allow(now=1.0)
    assert b.available_in(now=4.0) == pytest.approx(6.0)


def test_a_success_resets_the_count_of_failures() -> None:
    b = CircuitBreaker(failures_to_open=3, cooldown=10.0)
    for _ in range(5):
        b.record_failure(now=0.0)
        b.record_failure(now=0.0)
        b.record_success()
    assert b.state is BreakerState.CLOSED and b.allow(now=0.0)


def test_half_open_after_the_cooldown_admits_one_probe() -> None:
    b = CircuitBreaker(failures_to_open=1, cooldown=10.0)
    b.record_failure(now=0.0)
    assert not b.allow(now=9.99)
    assert b.available_in(now=9.99) > 0
    assert b.allow(now=10.0)  # the probe
    assert b.state is BreakerState.HALF_OPEN
    assert not b.allow(now=10.5)  # one probe at a time
    b.release_probe()  # that probe ended without a verdict (its client left)
    assert b.allow(now=10.6)


def test_a_successful_probe_closes_the_breaker() -> None:
    b = CircuitBreaker(failures_to_open=2, cooldown=10.0)
    b.record_failure(now=0.0)
    b.record_failure(now=0.0)
    assert b.allow(now=10.0)
    b.record_success()
    assert b.state is BreakerState.CLOSED
    assert b.allow(now=10.0) and b.allow(now=10.0)  # no probe limit once closed
    b.record_failure(now=11.0)  # and the count starts again from zero
    assert b.state is BreakerState.CLOSED


def test_a_failed_probe_reopens_for_another_cooldown() -> None:
    b = CircuitBreaker(failures_to_open=5, cooldown=10.0)
    for _ in range(5):
        b.record_failure(now=0.0)
    assert b.allow(now=10.0)
    b.record_failure(now=12.0)  # one failure is enough while half-open
    assert b.state is BreakerState.OPEN
    assert not b.allow(now=21.9)
    assert b.allow(now=22.0)


def test_retry_after_rests_the_deployment_without_opening_it() -> None:
    b = CircuitBreaker(failures_to_open=3, cooldown=10.0)
    b.rest_for(5.0, now=0.0)
    assert b.state is BreakerState.CLOSED
    assert not b.allow(now=1.0)
    assert b.available_in(now=1.0) == pytest.approx(4.0)
    assert b.allow(now=5.0)


# ---- the breaker inside the router ---------------------------------------------------------


def test_router_skips_an_open_deployment_and_probes_it_after_the_cooldown(clock: Clock) -> None:
    a, b = deployments(FakeProvider("a").then(busy(), busy(), busy()),
                       FakeProvider("b", priority=1))
    r = router([a, b])
    assert [ask(r) for _ in range(3)] == ["b", "b", "b"]  # a failed each time: failed over
    assert a.breaker.state is BreakerState.OPEN and provider(a).calls == 3
    assert [ask(r) for _ in range(5)] == ["b"] * 5  # open: a is not even asked
    assert provider(a).calls == 3
    clock.now += 29.9
    assert ask(r) == "b" and provider(a).calls == 3
    clock.now += 0.1
    assert ask(r) == "a"  # the half-open probe succeeds (a answers again) and closes it
    assert a.breaker.state is BreakerState.CLOSED
    assert ask(r) == "a" and provider(a).calls == 5


def test_router_reopens_after_a_failed_probe(clock: Clock) -> None:
    a, b = deployments(FakeProvider("a", default=busy()), FakeProvider("b", priority=1),
                       failures=1, cooldown=5.0)
    r = router([a, b])
    assert ask(r) == "b" and a.breaker.state is BreakerState.OPEN
    clock.now += 5.0
    assert ask(r) == "b"  # the probe went to a and failed
    assert provider(a).calls == 2 and a.breaker.state is BreakerState.OPEN
    assert ask(r) == "b" and provider(a).calls == 2  # open again: skipped


def test_every_deployment_open_is_503_with_the_wait(clock: Clock) -> None:
    (a,) = deployments(FakeProvider("a", default=busy()), failures=1, cooldown=8.0)
    r = router([a])
    with pytest.raises(ServiceUnavailable):
        ask(r)
    clock.now += 3.0
    with pytest.raises(ServiceUnavailable) as err:
        ask(r)
    assert provider(a).calls == 1
    assert "paused after repeated failures" in err.value.message
    assert err.value.retry_after == pytest.approx(5.0)


def test_a_client_error_is_relayed_and_does_not_count_against_the_upstream(clock: Clock) -> None:
    a, b = deployments(FakeProvider("a", default=busy(400)), FakeProvider("b", priority=1),
                       failures=1)
    r = router([a, b])
    for _ in range(3):
        with pytest.raises(UpstreamError) as err:
            ask(r)
        assert err.value.status == 400
    assert a.breaker.state is BreakerState.CLOSED and provider(b).calls == 0


def test_a_deployment_fault_fails_over_and_is_not_retried(clock: Clock) -> None:
    a, b = deployments(FakeProvider("a", default=busy(401)), FakeProvider("b", priority=1,
                                                                           default=busy(503)))
    r = router([a, b], retries_per_deployment=2)
    with pytest.raises(ServiceUnavailable):
        ask(r)
    # three rounds were allowed: b was tried in each, a (its key is refused) only once
    assert provider(a).calls == 1 and provider(b).calls == 3


# ---- strategies ------------------------------------------------------------------------------


def _firsts(group: list[Deployment], picks: int) -> Counter[str]:
    return Counter(strategies.weighted(group)[0].name for _ in range(picks))


@pytest.mark.usefixtures("seeded")
@pytest.mark.parametrize("weights", [(3.0, 1.0), (1.0, 2.0, 7.0), (1.0, 1.0, 1.0, 1.0)])
def test_weighted_first_picks_follow_the_weights(weights: tuple[float, ...]) -> None:
    group = deployments(*(FakeProvider(f"d{i}", weight=w) for i, w in enumerate(weights)))
    picks = 8000
    firsts = _firsts(group, picks)
    total = sum(weights)
    for i, w in enumerate(weights):
        assert firsts[f"d{i}"] / picks == pytest.approx(w / total, abs=0.025), firsts


@pytest.mark.usefixtures("seeded")
def test_weighted_orders_the_whole_group() -> None:
    group = deployments(*(FakeProvider(n, weight=w) for n, w in [("a", 5), ("b", 1), ("c", 1)]))
    for _ in range(200):
        order = strategies.weighted(group)
        assert sorted(d.name for d in order) == ["a", "b", "c"]
    assert [d.name for d in strategies.weighted(group[:1])] == ["a"]


@pytest.mark.usefixtures("seeded")
def test_priority_groups_come_first_whatever_the_weights() -> None:
    r = router(deployments(FakeProvider("backup", priority=1, weight=100.0),
                           FakeProvider("main-1", weight=1.0), FakeProvider("main-2", weight=1.0)))
    for _ in range(100):
        assert [d.name for d in r.candidates(MODEL)][-1] == "backup"


def test_least_latency_orders_by_measured_first_byte_unmeasured_first() -> None:
    slow, fast, new = deployments(FakeProvider("slow"), FakeProvider("fast"), FakeProvider("new"))
    slow.observe_first_byte(0.300)
    fast.observe_first_byte(0.050)
    assert [d.name for d in strategies.least_latency([slow, fast, new])] == ["new", "fast", "slow"]
    fast.observe_first_byte(2.0)  # an exponentially weighted average: one slow answer moves it
    assert fast.latency_ewma == pytest.approx(0.05 + 0.2 * (2.0 - 0.05))
    assert [d.name for d in strategies.least_latency([slow, fast])] == ["slow", "fast"]


def test_least_latency_router_prefers_the_fastest_upstream() -> None:
    slow, fast = deployments(FakeProvider("slow", delay=0.1), FakeProvider("fast", delay=0.001))
    r = router([slow, fast], strategy="least-latency")
    answered = Counter(ask(r) for _ in range(10))
    # each is measured once (the unmeasured go first), then the fast one takes every request
    assert answered == {"slow": 1, "fast": 9}


def test_least_busy_orders_by_requests_in_flight_per_weight() -> None:
    a, b, c = deployments(FakeProvider("a"), FakeProvider("b"), FakeProvider("c", weight=4.0))
    a.in_flight, b.in_flight, c.in_flight = 2, 1, 2  # per weight: 2, 1, 0.5
    assert [d.name for d in strategies.least_busy([a, b, c])] == ["c", "b", "a"]
    a.in_flight = b.in_flight = c.in_flight = 0  # idle: the heavier weight breaks the tie
    assert [d.name for d in strategies.least_busy([a, b, c])] == ["c", "a", "b"]


def test_least_busy_router_sends_the_next_request_to_the_idlest() -> None:
    a, b = deployments(FakeProvider("a"), FakeProvider("b"))
    r = router([a, b], strategy="least-busy")

    async def call(dep: Deployment) -> Completion:
        return await dep.provider.complete({"model": MODEL})

    async def scenario() -> list[str]:
        gate = provider(a).gate = asyncio.Event()
        held = asyncio.create_task(r.acquire(MODEL, call))  # idle tie: a, where it waits
        await wait_until_async(lambda: a.in_flight == 1, limit=5)
        second = await r.acquire(MODEL, call)  # a is busy: b
        r.release(second.deployment)
        gate.set()
        first = await held
        r.release(first.deployment)
        return [first.deployment.name, second.deployment.name]

    assert asyncio.run(scenario()) == ["a", "b"]
    assert a.in_flight == b.in_flight == 0
