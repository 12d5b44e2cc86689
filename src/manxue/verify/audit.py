"""Run one audit: plan the request budget, run the checks in turn, combine, decide.

    result = await run_audit(AuditConfig(base_url=..., model=...), progress)
    result["verdict"]   # "authentic" | "substituted" | "inconclusive"
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from manxue.verify.budget import BudgetExhausted, Ledger
from manxue.verify.catalog import find
from manxue.verify.checks import CHECKS, TITLES, CheckContext, CheckResult
from manxue.verify.checks.base import SKIP
from manxue.verify.client import Endpoint
from manxue.verify.config import AuditConfig
from manxue.verify.posterior import posterior
from manxue.verify.result import build_result
from manxue.verify.verdict import decide

_WANT = {"tokenizer": 3, "protocol": 4, "context": 6, "capability": 24}
_PRIORITY = ("tokenizer", "distribution", "protocol", "context", "capability")
DIST_PROMPTS = 8


def plan(checks: tuple[str, ...], cap: int | None, has_reference: bool,
         samples_per_prompt: int = 2) -> dict[str, int]:
    """Requests to the audited endpoint per check: the tokenizer fingerprint first, then the
    distribution test (DIST_PROMPTS prompts), protocol, context; capability probes take the rest."""
    want = {**_WANT, "distribution": DIST_PROMPTS * samples_per_prompt}
    out: dict[str, int] = {}
    left = cap if cap is not None else sum(want.values())
    for name in _PRIORITY:
        if name not in checks or (name == "distribution" and not has_reference):
            continue
        share = min(want[name], left)
        out[name] = share
        left -= share
    return {name: out.get(name, 0) for name in checks}


@dataclass
class CheckProgress:
    name: str
    title: str
    planned: int
    state: str = "pending"  # pending | running | done
    requests: int = 0
    reference_requests: int = 0
    status: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Progress:
    checks: dict[str, CheckProgress] = field(default_factory=dict)
    on_change: Callable[[Progress], None] | None = None

    def changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self)

    def count(self, check: str, side: str) -> None:
        p = self.checks.get(check)
        if p is None:
            return
        if side == "suspect":
            p.requests += 1
        else:
            p.reference_requests += 1
        self.changed()

    def to_list(self) -> list[dict[str, Any]]:
        return [p.to_dict() for p in self.checks.values()]


def _reference(cfg: AuditConfig, ledger: Ledger) -> Endpoint | None:
    if not cfg.has_reference:
        return None
    return Endpoint(cfg.reference_url or cfg.base_url, cfg.reference_model or cfg.model,
                    cfg.reference_api_key, side="reference", ledger=ledger, timeout=cfg.timeout,
                    guard=cfg.guard_for("reference"))


def _stop_if_refused(*endpoints: Endpoint | None) -> None:
    """End the audit when the network policy refused a target at connection time (a name
    that resolved to a forbidden address after the check at the start)."""
    for ep in endpoints:
        if ep is not None and ep.refused is not None:
            raise ep.refused


async def _run_check(name: str, ctx: CheckContext) -> CheckResult:
    if ctx.requests <= 0 and name != "distribution":
        return CheckResult.skipped(name, TITLES[name], "no requests left in the budget")
    try:
        return await CHECKS[name](ctx)
    except BudgetExhausted as exc:
        return CheckResult.skipped(name, TITLES[name], str(exc))


async def run_audit(cfg: AuditConfig, progress: Progress | None = None) -> dict[str, Any]:
    progress = progress or Progress()
    started, t0 = datetime.now(UTC), time.monotonic()
    claim = find(cfg.claim or cfg.model)
    budget = plan(cfg.checks, cfg.budget_requests, cfg.has_reference, cfg.options.dist_samples)
    for name in cfg.checks:
        progress.checks[name] = CheckProgress(name, TITLES[name], budget[name])
    progress.changed()
    ledger = Ledger(cap=cfg.budget_requests, listeners=[progress.count])
    suspect = Endpoint(cfg.base_url, cfg.model, cfg.api_key, ledger=ledger, timeout=cfg.timeout,
                       guard=cfg.guard_for("suspect"))
    reference = _reference(cfg, ledger)
    results: list[CheckResult] = []
    try:
        for name in cfg.checks:
            entry = progress.checks[name]
            entry.state = "running"
            progress.changed()
            ctx = CheckContext(suspect, reference, claim, cfg.seed, budget[name], cfg.options)
            result = await _run_check(name, ctx)
            _stop_if_refused(suspect, reference)
            results.append(result)
            entry.state, entry.status = "done", result.status
            progress.changed()
    finally:
        await suspect.close()
        if reference is not None:
            await reference.close()
    facts = {r.name: r.facts for r in results if r.status != SKIP}
    post = posterior(claim, facts)
    verdict, reason = decide(results, cfg.options.alpha, claim.id if claim else None, post)
    for r in results:
        progress.checks[r.name].status = r.status
    progress.changed()
    return build_result(cfg, claim, results, ledger, verdict, reason, post,
                        started=started, seconds=time.monotonic() - t0)
