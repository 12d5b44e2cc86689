"""Whole audits on the engine bench: the honest control passes, each substitute is caught."""

from __future__ import annotations

from manxue.verify.checks.base import CheckOptions
from tests.verify.conftest import CLAIM, Bench, check

RESULT_KEYS = {"verdict", "claim", "posterior", "checks", "requests", "tokens"}
CHECK_KEYS = {"name", "status", "statistic", "threshold", "evidence", "requests", "tokens"}


def test_honest_control_is_authentic_within_budget(bench: Bench) -> None:
    r = bench.audit("honest", budget_requests=40, seed=3)
    assert r["verdict"] == "authentic", r["reason"]
    assert set(r) >= RESULT_KEYS and r["claim"] == CLAIM
    assert [c["name"] for c in r["checks"]] == ["tokenizer", "protocol", "capability", "distribution"]
    for c in r["checks"]:
        assert set(c) >= CHECK_KEYS and c["status"] in ("pass", "fail", "skip")
        assert not c["rejects_claim"]
    assert r["requests"] == sum(c["requests"] for c in r["checks"]) <= 40
    assert r["tokens"] == sum(c["tokens"] for c in r["checks"]) > 0
    dist = check(r, "distribution")
    assert dist["evidence"]["kernel"] == "logprobs"
    assert dist["reference_requests"] == dist["requests"] == 16
    assert dist["threshold"] is not None and dist["p_value"] > dist["threshold"]
    assert r["posterior"][CLAIM] > 0.5 and r["posterior"]["gemma-3-270m"] < 1e-3
    cap = check(r, "capability")
    assert cap["counts"] and cap["evidence"]["prior"]["calibration"] == "measured"
    assert all("reply" in p and "answer" in p for p in cap["evidence"]["probes"])


def test_requantized_weights_are_caught_by_the_distribution_test(bench: Bench) -> None:
    r = bench.audit("requant", checks=("distribution",), budget_requests=16, seed=4)
    dist = check(r, "distribution")
    assert dist["rejects_claim"] and r["verdict"] == "substituted"
    assert dist["p_value"] <= dist["threshold"]
    first = dist["evidence"]["prompts"][0]
    assert first["endpoint_first_logprobs"] != first["reference_first_logprobs"]


def test_other_family_is_caught_by_the_tokenizer_alone(bench: Bench) -> None:
    r = bench.audit("gemma", checks=("tokenizer", "distribution"), budget_requests=19, seed=5)
    assert r["verdict"] == "substituted"
    assert check(r, "tokenizer")["rejects_claim"]
    dist = check(r, "distribution")  # gemma3 identified exactly: nothing left to test
    assert dist["status"] == "skip" and dist["summary"] == "the tokenizer already decided"
    assert r["requests"] == 3 and r["reference_requests"] == 0
    assert next(iter(r["posterior"])) == "gemma-3-270m"


def test_other_family_is_caught_by_the_distribution_test_too(bench: Bench) -> None:
    r = bench.audit("gemma", checks=("distribution",), budget_requests=16, seed=5)
    assert r["verdict"] == "substituted" and check(r, "distribution")["rejects_claim"]


def test_budget_caps_requests_and_checks_say_what_they_skipped(bench: Bench) -> None:
    r = bench.audit("honest", budget_requests=5, seed=6)
    assert r["requests"] <= 5
    assert check(r, "tokenizer")["requests"] == 3
    assert check(r, "distribution")["status"] == "skip"
    assert r["verdict"] in ("authentic", "inconclusive")


def test_text_kernel_when_the_endpoint_hides_logprobs(bench: Bench) -> None:
    r = bench.audit("honest", base_url=bench.nologprobs.url, checks=("distribution",),
                    budget_requests=8, seed=8, options=CheckOptions(dist_samples=2))
    dist = check(r, "distribution")
    assert dist["evidence"]["logprobs"] == {"endpoint": False, "reference": True}
    assert dist["evidence"]["kernel"] == "text 3-grams"
    assert not dist["rejects_claim"]
    assert r["verdict"] == "inconclusive"  # a text-only pass is no evidence of authenticity


def test_context_and_speed_profile_is_opt_in_and_reported_only(bench: Bench) -> None:
    r = bench.audit("honest", reference=False, checks=("context",), budget_requests=3, seed=9)
    ctx = check(r, "context")
    assert r["requests"] == 3 and not ctx["counts"] and not ctx["rejects_claim"]
    assert [n["target_tokens"] for n in ctx["evidence"]["needle"]] == [256, 1024]
    assert ctx["evidence"]["speed"]["ttft_s"] is not None
    assert ctx["evidence"]["speed"]["tokens_per_s"] > 0
