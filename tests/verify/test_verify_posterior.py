"""The posterior is coherent with the checks: a family the tokenizer identified exactly takes
the probability, and candidates the checks cannot tell apart never favour a substitute over the
claim (pure functions: the facts dicts are built here, as the checks build them)."""

from __future__ import annotations

from typing import Any

import pytest

from manxue.verify.catalog import Candidate, find, indistinguishable
from manxue.verify.posterior import DIFFERS, MATCH, candidates, posterior

SMOL, Q2K, GEMMA = "smollm2-135m-instruct", "smollm2-135m-instruct-q2k", "gemma-3-270m"
DEEPSEEK = ("deepseek-r1", "deepseek-v3", "r1-distill-qwen-32b", "r1-distill-qwen-14b",
            "r1-distill-qwen-7b", "r1-distill-qwen-1.5b", "r1-distill-llama-70b",
            "r1-distill-llama-8b", "gpt-4o-0513")


def _claim(name: str) -> Candidate:
    c = find(name)
    assert c is not None
    return c


def _post(claim: str, facts: dict[str, dict[str, Any]]) -> dict[str, float]:
    p = posterior(_claim(claim), facts)
    assert p is not None
    assert sum(p.values()) == pytest.approx(1.0, abs=1e-3)
    return p


# what a small model answers the probes: most level-1 items right, little else (the bench's
# SmolLM2 and its Q2_K copy both pass about this much)
WEAK_PROBES: dict[str, Any] = {"passes": [3, 0, 1], "trials": [8, 4, 4]}


def test_a_family_identified_exactly_takes_the_probability_from_a_false_claim() -> None:
    """`--claim deepseek-r1` against SmolLM2: the tokenizer saw smollm2, the protocol no
    reasoning, the probes little. No DeepSeek-group model (none uses smollm2's tokenizer) may
    keep any weight: before, deepseek-v3 and gpt-4o split it 0.498 / 0.498."""
    p = _post("deepseek-r1", {"tokenizer": {"families": ["smollm2"]},
                              "protocol": {"reasoning": False}, "capability": WEAK_PROBES})
    assert sum(p.get(m, 0.0) for m in DEEPSEEK) < 1e-4, p
    assert p[SMOL] + p[Q2K] > 0.999
    assert next(iter(p)) == SMOL  # the two cannot be told apart: the original is listed first
    assert p[SMOL] >= p[Q2K]


def test_only_the_tokenizer_seen_still_points_at_the_identified_family() -> None:
    p = _post("deepseek-r1", {"tokenizer": {"families": ["smollm2"]}})
    assert sum(p.get(m, 0.0) for m in DEEPSEEK) < 1e-4
    assert list(p)[:2] == [SMOL, Q2K] and p[SMOL] == p[Q2K] == 0.5


def test_a_family_no_catalog_model_uses_goes_to_an_unlisted_model() -> None:
    p = _post("deepseek-r1", {"tokenizer": {"families": ["cl100k"]},
                              "protocol": {"reasoning": False}})
    top = next(iter(p))
    assert top == "unlisted (cl100k tokenizer)" and p[top] > 0.999, p


def test_indistinguishable_candidates_never_favour_the_substitute_over_the_claim() -> None:
    """Honest SmolLM2 without a reference: probe results that Q2_K's calibration happens to fit
    a little better (fewer level-1 passes, a level-3 pass) must not move the posterior to the
    Q2_K copy: their pass rates are within calibration noise of each other."""
    assert indistinguishable(_claim(SMOL), _claim(Q2K))
    assert not indistinguishable(_claim(SMOL), _claim(GEMMA))
    for probes in (WEAK_PROBES, {"passes": [4, 0, 2], "trials": [10, 4, 3]},
                   {"passes": [2, 0, 1], "trials": [9, 4, 4]}):
        p = _post(SMOL, {"tokenizer": {"families": ["smollm2"]},
                         "protocol": {"reasoning": False}, "capability": probes})
        assert p[SMOL] >= p[Q2K], (probes, p)
        assert next(iter(p)) == SMOL and p[GEMMA] < 1e-4


def test_the_distribution_test_moves_the_posterior_between_close_candidates() -> None:
    """Matching the reference (logprob kernel) favours the claim; a rejection the substitute."""
    base: dict[str, dict[str, Any]] = {"tokenizer": {"families": ["smollm2"]},
                                       "protocol": {"reasoning": False},
                                       "capability": WEAK_PROBES}
    match = _post(SMOL, {**base, "distribution": {"outcome": MATCH, "threshold": 0.0025}})
    assert match[SMOL] >= 0.9 and match[Q2K] < 0.1, match
    differs = _post(SMOL, {**base, "distribution": {"outcome": DIFFERS, "threshold": 0.0025}})
    assert next(iter(differs)) == Q2K and differs[Q2K] > 0.95 and differs[SMOL] < 0.01, differs


def test_probes_still_separate_models_the_calibration_tells_apart() -> None:
    strong = _post("deepseek-r1", {"tokenizer": {"families": ["deepseek"]},
                                   "protocol": {"reasoning": True},
                                   "capability": {"passes": [8, 7, 6], "trials": [8, 8, 8]}})
    assert next(iter(strong)) == "deepseek-r1" and strong["deepseek-r1"] > 0.99
    gemma = _post(SMOL, {"capability": {"passes": [0, 0, 0], "trials": [12, 6, 6]}})
    assert gemma[GEMMA] > gemma[SMOL]


def test_the_claim_is_a_candidate_even_without_priors() -> None:
    claim = _claim("deepseek-v4-flash")
    assert not claim.has_priors
    assert claim.id in {m.id for m in candidates(claim, ["deepseek"])}
    p = _post("deepseek-v4-flash", {"tokenizer": {"families": ["deepseek"]},
                                    "protocol": {"reasoning": True}})
    assert next(iter(p)) == "deepseek-v4-flash"
