"""A posterior over candidate models from what the checks saw.

P(model | evidence) ∝ P(model) · P(tokenizer fit | model) · P(reasoning seen | model)
· P(probe results | model) · P(distribution test outcome | model), with a uniform prior.

- Candidates: the claim's group (data/candidates.toml), the claim itself always. When the
  tokenizer fingerprint found families that no model of the group uses, the catalog's models
  of those families join (and, for a family no catalog model uses, an "unlisted" stand-in with
  flat priors): the probability goes where the exact evidence points, never to a tie between
  models that the tokenizer already ruled out.
- Tokenizer counts are exact: a model whose family did not fit keeps a factor MISMATCH (1e-6).
- reasoning_content there or not when a model would (not) show it: REASONING_MISMATCH (1e-3),
  weaker, since a proxy can strip or add the field.
- Probe results are beta-binomial per level. Models whose pass-rate priors are within
  calibration noise of each other at every level (catalog.indistinguishable) are scored with
  one prior — the claim's when it is among them, else the first in catalog order (originals
  before their quantizations): differences the calibration cannot resolve must not decide
  between the claim and a substitute.
- The distribution test against a reference serving the claimed weights (logprob kernel, able
  to reject): a match keeps the claim's weight (1 − its threshold) and leaves the others
  1 − DIST_POWER; a rejection leaves the claim its threshold (the chance an honest endpoint is
  rejected) and the others DIST_POWER.

Ties are listed claim first, then in catalog order.
"""

from __future__ import annotations

from dataclasses import replace
from math import exp, log
from typing import Any

from manxue.verify import betabinom
from manxue.verify.catalog import FLAT, UNLISTED, Candidate, indistinguishable, rivals, with_tokenizer

MISMATCH = 1e-6
REASONING_MISMATCH = 1e-3
DIST_POWER = 0.9
"""The distribution test's power against a close substitute: the lower end of the 95%
interval measured against the Q2_K copy (40/40 caught, 91.2%–100%; docs/benchmarks/verify.md)."""
MATCH, DIFFERS = "match", "differs"


def candidates(claim: Candidate | None, families: list[str] | None) -> list[Candidate]:
    """The models the posterior is over (see the module docstring)."""
    models = rivals(claim)
    if claim is not None and all(m.id != claim.id for m in models):
        models = [replace(claim, priors=FLAT), *models]
    if families and not any(m.tokenizer in families for m in models):
        models = [*models, *with_tokenizer(families, models)]
    return models


def probe_anchors(claim: Candidate | None, models: list[Candidate]) -> dict[str, Candidate]:
    """Model id → the model whose priors score its probe results: the first model (claim
    first, then in order) it cannot be told apart from."""
    first = claim.id if claim is not None else None
    ordered = sorted(models, key=lambda m: m.id != first)
    anchors: list[Candidate] = []
    out: dict[str, Candidate] = {}
    for m in ordered:
        anchor = next((a for a in anchors if indistinguishable(a, m)), None)
        if anchor is None:
            anchors.append(m)
            anchor = m
        out[m.id] = anchor
    return out


def posterior(claim: Candidate | None, facts: dict[str, dict[str, Any]]) -> dict[str, float] | None:
    """Model id → probability, most likely first; None when nothing informs it."""
    families = facts.get("tokenizer", {}).get("families")
    reasoning = facts.get("protocol", {}).get("reasoning")
    cap = facts.get("capability", {})
    passes, trials = cap.get("passes"), cap.get("trials")
    dist = facts.get("distribution", {})
    models = candidates(claim, families)
    if not models or (not families and not trials and reasoning is None
                      and dist.get("outcome") is None):
        return None
    anchors = probe_anchors(claim, models)
    logs: dict[str, float] = {}
    for m in models:
        score = 0.0
        if families:
            score += 0.0 if m.tokenizer in families else log(MISMATCH)
        if reasoning is not None and m.group != UNLISTED:
            score += 0.0 if m.reasoning == reasoning else log(REASONING_MISMATCH)
        if passes is not None and trials is not None:
            score += betabinom.log_likelihood(passes, trials, anchors[m.id].priors)
        score += _distribution(dist, claim is not None and m.id == claim.id)
        logs[m.id] = score
    return _normalise(logs, claim, [m.id for m in models])


def _distribution(dist: dict[str, Any], is_claim: bool) -> float:
    outcome = dist.get("outcome")
    threshold = float(dist.get("threshold") or 0.01)
    if outcome == MATCH:
        return log(1.0 - threshold) if is_claim else log(1.0 - DIST_POWER)
    if outcome == DIFFERS:
        return log(threshold) if is_claim else log(DIST_POWER)
    return 0.0


def _normalise(logs: dict[str, float], claim: Candidate | None, order: list[str]
               ) -> dict[str, float]:
    top = max(logs.values())
    weights = {k: exp(v - top) for k, v in logs.items()}
    total = sum(weights.values())
    probs = {k: round(w / total, 4) for k, w in weights.items()}
    first = claim.id if claim is not None else None
    ranked = sorted(probs, key=lambda k: (-probs[k], k != first, order.index(k)))
    return {k: probs[k] for k in ranked}
