"""Check 3, capability probes: fresh questions per audit (manxue.verify.probes), graded
automatically, compared with what the claimed model passes at each level."""

from __future__ import annotations

import asyncio
from typing import Any

from manxue.verify import betabinom
from manxue.verify.budget import BudgetExhausted
from manxue.verify.catalog import LEVELS
from manxue.verify.checks.base import PASS, CheckContext, CheckResult, clip
from manxue.verify.client import Reply
from manxue.verify.probes import Probe, generate

NAME, TITLE = "capability", "Capability probes"
MEANING = ("Probes generated from seeded templates (arithmetic, algebra, counting, reversal, "
           "orderings, Chinese character composition) at three levels. Statistic: probes passed. "
           "p-value: the chance that the claimed model passes this few or fewer (beta-binomial "
           "over its per-level pass-rate prior). It counts toward the verdict only when those "
           "priors were measured on these probes (calibration 'measured').")
_MAX_PROBES = 24
_MIN_PROBES = 3


async def run(ctx: CheckContext) -> CheckResult:
    count = min(_MAX_PROBES, ctx.requests)
    if count < _MIN_PROBES:
        return CheckResult.skipped(NAME, TITLE, "the request budget leaves no room for it", MEANING)
    claim = ctx.claim
    probes = generate(ctx.seed, count)
    max_tokens = claim.probe_max_tokens if claim else 512
    temperature = claim.probe_temperature if claim else 0.0
    replies = await asyncio.gather(*(_ask(ctx, p, max_tokens, temperature) for p in probes))
    graded = [(p, r, r is not None and r.ok and p.grade(r.content)) for p, r in zip(probes, replies,
                                                                                   strict=True)]
    answered = [(p, r, ok) for p, r, ok in graded if r is not None and r.ok]
    passes = [sum(ok for p, _, ok in answered if p.level == lv) for lv in LEVELS]
    trials = [sum(1 for p, _, _ in answered if p.level == lv) for lv in LEVELS]
    evidence: dict[str, Any] = {
        "max_tokens": max_tokens, "temperature": temperature,
        "per_level": {str(lv): {"passed": passes[i], "asked": trials[i]} for i, lv in enumerate(LEVELS)},
        "probes": [{**p.describe(), "reply": clip(r.content, 160) if r is not None else None,
                    "status": r.status if r is not None else None, "passed": ok}
                   for p, r, ok in graded],
    }
    facts = {"passes": passes, "trials": trials}
    total, asked = sum(passes), sum(trials)
    if asked == 0:
        return CheckResult.skipped(NAME, TITLE, "no probe was answered", MEANING, evidence)
    if claim is None or not claim.has_priors:
        return CheckResult(NAME, TITLE, PASS, f"passed {total}/{asked} probes (no prior for the "
                           "claim to compare with)", MEANING, statistic=float(total), counts=False,
                           evidence=evidence, facts=facts)
    p = betabinom.lower_tail(passes, trials, claim.priors)
    expected = sum(n * pr.mean for n, pr in zip(trials, claim.priors, strict=True))
    evidence["expected_passes"] = round(expected, 2)
    evidence["prior"] = {"calibration": claim.calibration,
                         "pass_rates": [round(pr.mean, 3) for pr in claim.priors]}
    summary = (f"passed {total}/{asked} (claimed model expects {expected:.1f}); "
               f"P(≤ {total} | claim) = {p:.3g}")
    return CheckResult(NAME, TITLE, PASS, summary, MEANING, p_value=p, statistic=float(total),
                       counts=claim.calibrated, evidence=evidence, facts=facts)


async def _ask(ctx: CheckContext, probe: Probe, max_tokens: int, temperature: float) -> Reply | None:
    body = {"messages": [{"role": "user", "content": probe.prompt}], "max_tokens": max_tokens,
            "temperature": temperature}
    try:
        return await ctx.suspect.chat(NAME, body)
    except BudgetExhausted:
        return None
