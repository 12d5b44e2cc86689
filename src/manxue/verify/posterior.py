"""A posterior over candidate models from what the checks saw.

P(model | evidence) ∝ P(model) · P(tokenizer fit | model) · P(reasoning seen | model)
· P(probe results | model), with a uniform prior over the claim's group (data/candidates.toml).
Tokenizer counts are exact, so a model whose family did not fit keeps only a factor MISMATCH
(1e-6) of its weight; reasoning_content that is there or not when a model would (not) show it
costs a factor REASONING_MISMATCH (1e-3): weaker, since a proxy can strip or add the field.
Probe results are beta-binomial per level under each model's pass-rate prior.
"""

from __future__ import annotations

from math import exp, log
from typing import Any

from manxue.verify import betabinom
from manxue.verify.catalog import Candidate, rivals

MISMATCH = 1e-6
REASONING_MISMATCH = 1e-3


def posterior(claim: Candidate | None, facts: dict[str, dict[str, Any]]) -> dict[str, float] | None:
    """Model id → probability, most likely first; None when nothing informs it."""
    models = rivals(claim)
    families = facts.get("tokenizer", {}).get("families")
    reasoning = facts.get("protocol", {}).get("reasoning")
    cap = facts.get("capability", {})
    passes, trials = cap.get("passes"), cap.get("trials")
    if not models or (not families and not trials and reasoning is None):
        return None
    logs: dict[str, float] = {}
    for m in models:
        score = 0.0
        if families:
            score += 0.0 if m.tokenizer in families else log(MISMATCH)
        if reasoning is not None:
            score += 0.0 if m.reasoning == reasoning else log(REASONING_MISMATCH)
        if passes is not None and trials is not None:
            score += betabinom.log_likelihood(passes, trials, m.priors)
        logs[m.id] = score
    top = max(logs.values())
    weights = {k: exp(v - top) for k, v in logs.items()}
    total = sum(weights.values())
    ranked = sorted(weights.items(), key=lambda kv: -kv[1])
    return {k: round(w / total, 4) for k, w in ranked}
