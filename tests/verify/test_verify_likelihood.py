"""The likelihood check on real models: the reference's weights (the shipped SmolLM2 GGUF)
score ordinary answers from the audited endpoint, which offers no logprobs. An honest endpoint
is vouched for with a stated detectable shift; a Q2_K copy, an endpoint that mixes it in, and
one that sends only audit-looking requests to the genuine model are all caught, early."""

from __future__ import annotations

from collections.abc import Iterator
from random import Random
from typing import Any

import pytest

from manxue.engine.default_model import default_model_path
from manxue.verify import AuditConfig, run_audit
from manxue.verify.scorer import EngineScorer, open_scorer
from manxue.verify.user_prompts import request_for, user_prompts
from tests.verify.conftest import CLAIM, Bench, check, run


@pytest.fixture(scope="module")
def scorer() -> Iterator[EngineScorer]:
    s = open_scorer(default_model_path())
    yield s
    s.close()


def _audit(url: str, scorer: EngineScorer, seed: int, **kw: Any) -> dict[str, Any]:
    kw.setdefault("checks", ("likelihood",))
    kw.setdefault("budget_requests", 60)
    cfg = AuditConfig(base_url=url, model="honest", claim=CLAIM, seed=seed, scorer=scorer, **kw)
    return run(run_audit(cfg))


def test_an_honest_endpoint_without_logprobs_is_vouched_for(bench: Bench, scorer: EngineScorer):
    r = _audit(bench.nologprobs.url, scorer, seed=3)
    assert r["verdict"] == "authentic", r["reason"]
    lik = check(r, "likelihood")
    ev = lik["evidence"]
    assert lik["status"] == "pass" and ev["detectable_shift"] <= 0.1
    assert "would have been caught" in r["reason"] and str(ev["detectable_shift"]) in r["reason"]
    # stopped once decisive; the raw mean z is not bounded here: a few very unlikely tokens
    # move it (0.27 in one honest CI run), which is why the wealths bet on clipped z
    assert ev["answers"] < 60 and ev["log_e_substituted"] < ev["log_threshold"]
    assert r["settings"]["reference_weights"] == default_model_path().name


@pytest.mark.parametrize("suspect", ["requant", "mixed", "aware"])
def test_substitutes_are_caught_without_logprobs(bench: Bench, scorer: EngineScorer, suspect: str):
    url = {"requant": bench.nologprobs.url, "mixed": bench.mixed.url, "aware": bench.aware.url}[suspect]
    model = "requant" if suspect == "requant" else "honest"
    cfg = AuditConfig(base_url=url, model=model, claim=CLAIM, budget_requests=40, seed=5,
                      scorer=scorer, checks=("likelihood",))
    r = run(run_audit(cfg))
    assert r["verdict"] == "substituted", r["reason"]
    ev = check(r, "likelihood")["evidence"]
    # decided well inside the budget (the mixing endpoint's coin depends on earlier tests)
    assert ev["answers"] <= 24 and ev["mean_excess_nats"] > 0.1
    assert ev["log_e_substituted"] >= ev["log_threshold"]


def test_with_weights_the_default_audit_adds_the_likelihood_check(bench: Bench,
                                                                   scorer: EngineScorer):
    cfg = AuditConfig(base_url=bench.gateway.url, model="requant", claim=CLAIM, seed=2,
                      scorer=scorer, budget_requests=40)
    assert cfg.checks[:2] == ("tokenizer", "likelihood")
    r = run(run_audit(cfg))
    assert r["verdict"] == "substituted"
    skipped = [c for c in r["checks"] if c["status"] == "skip"]
    assert {c["name"] for c in skipped} == {"protocol", "capability", "distribution"}
    assert all("likelihood already decided" in c["summary"] for c in skipped)


def test_audit_traffic_looks_like_ordinary_traffic():
    rng = Random(1)
    bodies = [request_for(p, rng) for p in user_prompts(1, 200)]
    assert len({b["messages"][-1]["content"] for b in bodies}) == 200
    for b in bodies:
        assert set(b) == {"messages", "temperature", "max_tokens"}
        assert b["temperature"] >= 0.6 and b["max_tokens"] >= 150
    assert user_prompts(1, 20) != user_prompts(2, 20)


def test_the_http_api_scores_with_the_gateways_own_engine(bench: Bench):
    """POST /v1/verify with a reference model served here from a local engine: its weights
    score the audited answers in process (no scorer to pass, no logprobs needed)."""
    import time

    import httpx

    r = httpx.post(bench.gateway.url + "/v1/verify", timeout=10, json={
        "model": "requant", "claim": CLAIM, "reference_model": "reference",
        "checks": ["likelihood"], "budget_requests": 20, "seed": 4})
    assert r.status_code == 202, r.text
    url = bench.gateway.url + r.json()["url"]
    deadline = time.monotonic() + 120
    while (job := httpx.get(url, timeout=10).json())["status"] not in ("done", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert job["status"] == "done", job["error"]
    result = job["result"]
    assert result["verdict"] == "substituted", result["reason"]
    assert "reference" in result["settings"]["reference_weights"]
