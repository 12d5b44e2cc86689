"""Run one audit: plan the request budget, run the checks in turn, combine, decide.

    result = await run_audit(AuditConfig(base_url=..., model=...), progress)
    result["verdict"]   # "authentic" | "substituted" | "inconclusive" | "error"

Sequential: the tokenizer fingerprint runs first, and a check whose result is `decisive` (an
exact rejection of the claim) ends the audit there; the checks after it are skipped, their
budget unspent. An endpoint or reference that cannot be used at all (its first requests fail
the same way: a refused key, no such model, nothing listening) also ends it, with the verdict
`error` saying why and whose it is (`Health`).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from manxue.verify.budget import BudgetExhausted, Ledger
from manxue.verify.catalog import Candidate, find
from manxue.verify.checks import CHECKS, TITLES, CheckContext, CheckResult
from manxue.verify.checks.base import SKIP, received
from manxue.verify.client import Endpoint, Reply, StreamReply
from manxue.verify.config import AuditConfig
from manxue.verify.posterior import DIFFERS, MATCH, posterior
from manxue.verify.result import build_result
from manxue.verify.verdict import (
    ERROR,
    SIDE_NAMES,
    Failure,
    Side,
    correct,
    decide,
    describe_failure,
    failure_of,
    usable,
)

_WANT = {"tokenizer": 3, "likelihood": 60, "protocol": 4, "context": 6, "capability": 24}
_PRIORITY = ("tokenizer", "likelihood", "distribution", "protocol", "context", "capability")
_RUN_ORDER = _PRIORITY
"""The order checks run in: the cheap, exact tokenizer fingerprint first (it can decide alone),
then the likelihood check (sequential: it stops as soon as it is decisive either way, and is
the strongest evidence when the reference's weights are at hand), then the distribution test
(which can acquit too, and is the first use of a reference endpoint, so that an unusable
reference is found before the probes are spent). Results are reported in the order the checks
were asked for."""
DIST_PROMPTS = 8
SAME_FAILURES = 2
"""Failures of the same kind, before any usable answer, that make a side unusable."""
_SHOWN_FAILURES = 4


def plan(checks: tuple[str, ...], cap: int | None, has_reference: bool,
         samples_per_prompt: int = 2, has_scorer: bool = False) -> dict[str, int]:
    """Requests to the audited endpoint per check: the tokenizer fingerprint first, then the
    likelihood check (with the reference's weights), the distribution test (DIST_PROMPTS
    prompts), protocol, context; capability probes take the rest."""
    want = {**_WANT, "distribution": DIST_PROMPTS * samples_per_prompt}
    out: dict[str, int] = {}
    left = cap if cap is not None else sum(want.values())
    for name in _PRIORITY:
        if name not in checks or (name == "distribution" and not has_reference) \
                or (name == "likelihood" and not has_scorer):
            continue
        share = min(want[name], left)
        out[name] = share
        left -= share
    return {name: out.get(name, 0) for name in checks}


# -- progress -----------------------------------------------------------------------------

@dataclass
class CheckProgress:
    name: str
    title: str
    planned: int
    state: str = "pending"  # pending | running | done
    requests: int = 0
    reference_requests: int = 0
    status: str | None = None
    summary: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Progress:
    """What an audit has done so far: per check, and in all against the budget."""

    checks: dict[str, CheckProgress] = field(default_factory=dict)
    on_change: Callable[[Progress], None] | None = None
    budget: int = 0
    """Requests the audit may send to the audited endpoint (the cap, else what it plans)."""
    spent: int = 0
    reference_spent: int = 0
    current: str | None = None
    """The check running now (None before the first and after the last)."""
    failed: int = 0
    """Replies so far that showed a failure of their endpoint (refused key, nothing listening)."""
    finding: str | None = None
    """The latest finished (not skipped) check's finding: "tokenizer fail: tokenizer is …"."""

    def changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self)

    def count(self, check: str, side: str) -> None:
        p = self.checks.get(check)
        if side == "suspect":
            self.spent += 1
            if p is not None:
                p.requests += 1
        else:
            self.reference_spent += 1
            if p is not None:
                p.reference_requests += 1
        self.changed()

    def evidence(self) -> str:
        """One line on the evidence so far: the running check's requests, failures, and the
        last finished check's finding."""
        parts: list[str] = []
        run = self.checks.get(self.current or "")
        if run is not None:
            parts.append(f"{run.name}: {run.requests} of {run.planned} requests")
        if self.failed:
            parts.append(f"{self.failed} failed repl{'y' if self.failed == 1 else 'ies'}")
        if self.finding:
            parts.append(self.finding)
        return "; ".join(parts)

    def totals(self) -> dict[str, Any]:
        return {"spent": self.spent, "budget": self.budget,
                "reference_spent": self.reference_spent, "current": self.current,
                "evidence": self.evidence()}

    def to_list(self) -> list[dict[str, Any]]:
        return [p.to_dict() for p in self.checks.values()]


# -- whether each side can be used at all --------------------------------------------------

@dataclass
class Health:
    """Watches the replies of each side until one is usable. A side whose first replies fail
    the same way SAME_FAILURES times (before any usable answer) cannot be used: from then on
    no request is sent to either side, and the audit ends with the verdict `error`."""

    sides: dict[str, Side]
    progress: Progress | None = None
    worked: set[str] = field(default_factory=set)
    seen: Counter[tuple[str, str]] = field(default_factory=Counter)
    first: dict[str, Failure] = field(default_factory=dict)
    shown: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    unusable: tuple[str, Failure] | None = None

    @property
    def stopped(self) -> bool:
        return self.unusable is not None

    def observe(self, side: str, reply: Reply | StreamReply) -> None:
        if side in self.worked or self.stopped:
            return
        if usable(reply):
            self.worked.add(side)
            return
        failure = failure_of(reply)
        if failure is None:
            return
        self.first.setdefault(side, failure)
        shown = self.shown.setdefault(side, [])
        if len(shown) < _SHOWN_FAILURES:
            shown.append(received(reply))
        if self.progress is not None:
            self.progress.failed += 1
        self.seen[side, failure.kind] += 1
        if self.seen[side, failure.kind] >= SAME_FAILURES:
            self.unusable = (side, failure)

    def not_sent(self) -> str:
        side = SIDE_NAMES.get(self.unusable[0], "") if self.unusable else ""
        return f"not sent: the audit stopped (the {side} cannot be used)"

    def error(self) -> dict[str, Any] | None:
        """The result's `error` object, when a side could not be used: the side declared
        unusable, else one that failed and never answered usably."""
        found = self.unusable or next(((s, f) for s, f in self.first.items()
                                       if s not in self.worked), None)
        if found is None:
            return None
        side, failure = found
        return {**describe_failure(failure, self.sides[side]), "replies": self.shown.get(side, [])}


class WatchedEndpoint(Endpoint):
    """An Endpoint that reports every reply to the audit's Health. Until its side has answered
    usably once, it sends one request at a time, so that a side that cannot be used costs
    SAME_FAILURES requests, not a batch; once a side is unusable it sends nothing (it answers a
    failed Reply at once, without spending the budget). Replies to a request that names another
    model (the protocol check's unknown-model probe) say nothing about this one and are not
    reported."""

    def __init__(self, *args: Any, health: Health, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.health = health
        self._first = asyncio.Lock()

    async def _turn(self) -> bool:
        """Wait for this request's turn while the side is unproven; True when holding it."""
        if self.side in self.health.worked:
            return False
        await self._first.acquire()
        if self.side in self.health.worked:
            self._first.release()
            return False
        return True

    def _report(self, body: dict[str, Any], reply: Reply | StreamReply) -> None:
        if body.get("model", self.model) == self.model:
            self.health.observe(self.side, reply)

    async def chat(self, check: str, body: dict[str, Any]) -> Reply:
        holding = await self._turn()
        try:
            if self.health.stopped:
                return Reply(0, None, 0.0, self.health.not_sent())
            reply = await super().chat(check, body)
            self._report(body, reply)
            return reply
        finally:
            if holding:
                self._first.release()

    async def stream(self, check: str, body: dict[str, Any]) -> StreamReply:
        holding = await self._turn()
        try:
            if self.health.stopped:
                return StreamReply(0, error=self.health.not_sent())
            reply = await super().stream(check, body)
            self._report(body, reply)
            return reply
        finally:
            if holding:
                self._first.release()


# -- the audit ------------------------------------------------------------------------------

def _sides(cfg: AuditConfig) -> dict[str, Side]:
    out = {"suspect": Side("suspect", cfg.base_url, cfg.model, bool(cfg.api_key), cfg.timeout)}
    if cfg.has_reference:
        out["reference"] = Side("reference", cfg.reference_url or cfg.base_url,
                                cfg.reference_model or cfg.model, bool(cfg.reference_api_key),
                                cfg.timeout)
    return out


def _endpoint(cfg: AuditConfig, side: Side, ledger: Ledger, health: Health) -> WatchedEndpoint:
    key = cfg.api_key if side.side == "suspect" else cfg.reference_api_key
    return WatchedEndpoint(side.url, side.model, key, side=side.side, ledger=ledger,
                           timeout=cfg.timeout, guard=cfg.guard_for(side.side), health=health)


def _stop_if_refused(*endpoints: Endpoint | None) -> None:
    """End the audit when the network policy refused a target at connection time (a name
    that resolved to a forbidden address after the check at the start)."""
    for ep in endpoints:
        if ep is not None and ep.refused is not None:
            raise ep.refused


async def _run_check(name: str, ctx: CheckContext) -> CheckResult:
    if ctx.requests <= 0 and name not in ("distribution", "likelihood"):
        return CheckResult.skipped(name, TITLES[name], "no requests left in the budget")
    try:
        return await CHECKS[name](ctx)
    except BudgetExhausted as exc:
        return CheckResult.skipped(name, TITLES[name], str(exc))


def _interrupted(result: CheckResult, error: dict[str, Any]) -> CheckResult:
    """The check that was running when a side turned out unusable: its evidence is kept, but
    it says nothing about the claim."""
    result.status, result.counts, result.rejected, result.decisive = SKIP, False, False, False
    result.p_value = None
    result.summary = f"stopped: the {error['side']} cannot be used ({error['cause']})"
    return result


@dataclass
class _Run:
    """One audit's moving parts."""

    cfg: AuditConfig
    progress: Progress
    claim: Candidate | None
    budget: dict[str, int]
    ledger: Ledger
    health: Health
    suspect: WatchedEndpoint
    reference: WatchedEndpoint | None
    results: list[CheckResult] = field(default_factory=list)
    error: dict[str, Any] | None = None

    async def check(self, name: str) -> CheckResult:
        entry = self.progress.checks[name]
        entry.state, self.progress.current = "running", name
        self.progress.changed()
        ctx = CheckContext(self.suspect, self.reference, self.claim, self.cfg.seed,
                           self.budget[name], self.cfg.options, self.cfg.scorer)
        result = await _run_check(name, ctx)
        _stop_if_refused(self.suspect, self.reference)
        if self.health.stopped:
            self.error = self.health.error()
            if self.error is not None:
                result = _interrupted(result, self.error)
        self.done(result)
        return result

    def done(self, result: CheckResult) -> None:
        self.results.append(result)
        entry = self.progress.checks[result.name]
        entry.state, entry.status, entry.summary = "done", result.status, result.summary
        if result.status != SKIP:
            self.progress.finding = f"{result.name} {result.status}: {result.summary}"
        self.progress.current = None
        self.progress.changed()

    async def run(self, order: list[str]) -> None:
        for i, name in enumerate(order):
            result = await self.check(name)
            stop = self._stop_reason(result)
            if stop is not None:
                for rest in order[i + 1:]:
                    self.done(CheckResult.skipped(rest, TITLES[rest], stop))
                return
        if self.error is None:  # a side that failed and never once answered usably
            self.error = self.health.error()

    def _stop_reason(self, result: CheckResult) -> str | None:
        if self.error is not None:
            return f"not run: the audit stopped (the {self.error['side']} cannot be used)"
        if result.decisive:
            return f"the {result.name} already decided"
        return None


def _run_rank(name: str) -> int:
    return _RUN_ORDER.index(name) if name in _RUN_ORDER else len(_RUN_ORDER)


def _facts(results: list[CheckResult]) -> dict[str, dict[str, Any]]:
    facts = {r.name: r.facts for r in results if r.status != SKIP}
    likely = next((r for r in results if r.name == "likelihood" and r.decisive), None)
    if likely is not None:  # as decisive as a logprob distribution test, and the same kind
        facts["distribution"] = {"outcome": DIFFERS if likely.rejected else MATCH,
                                 "threshold": likely.threshold or 0.0}
        return facts
    dist = next((r for r in results if r.name == "distribution" and r.status != SKIP), None)
    if dist is not None and dist.threshold is not None \
            and dist.evidence.get("kernel") == "logprobs" \
            and dist.evidence.get("resolution", 1.0) <= dist.threshold:
        facts["distribution"] = {"outcome": DIFFERS if dist.rejected else MATCH,
                                 "threshold": dist.threshold}
    return facts


async def run_audit(cfg: AuditConfig, progress: Progress | None = None) -> dict[str, Any]:
    progress = progress or Progress()
    started, t0 = datetime.now(UTC), time.monotonic()
    claim = find(cfg.claim or cfg.model)
    order = sorted(cfg.checks, key=_run_rank)
    budget = plan(cfg.checks, cfg.budget_requests, cfg.has_reference, cfg.options.dist_samples,
                  has_scorer=cfg.scorer is not None)
    progress.budget = cfg.budget_requests if cfg.budget_requests is not None else sum(budget.values())
    for name in cfg.checks:
        progress.checks[name] = CheckProgress(name, TITLES[name], budget[name])
    progress.changed()
    ledger = Ledger(cap=cfg.budget_requests, listeners=[progress.count])
    sides = _sides(cfg)
    health = Health(sides, progress)
    suspect = _endpoint(cfg, sides["suspect"], ledger, health)
    reference = _endpoint(cfg, sides["reference"], ledger, health) if "reference" in sides else None
    audit = _Run(cfg, progress, claim, budget, ledger, health, suspect, reference)
    try:
        await audit.run(order)
    finally:
        await suspect.close()
        if reference is not None:
            await reference.close()
    results = sorted(audit.results, key=lambda r: cfg.checks.index(r.name))
    if audit.error is not None:
        verdict, reason, post = ERROR, _error_reason(audit.error), None
    else:
        correct(results, cfg.options.alpha)
        post = posterior(claim, _facts(results))
        verdict, reason = decide(results, cfg.options.alpha, claim.id if claim else None, post)
    for r in results:
        progress.checks[r.name].status = r.status
    progress.changed()
    return build_result(cfg, claim, results, ledger, verdict, reason, post,
                        started=started, seconds=time.monotonic() - t0, error=audit.error)


def _error_reason(error: dict[str, Any]) -> str:
    return (f"could not audit: the {error['side']} cannot be used: {error['cause']}. "
            f"What to do: {error['what_to_do']}")
