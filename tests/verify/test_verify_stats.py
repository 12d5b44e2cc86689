"""The statistics: Holm's correction, the permutation test's level and power, beta-binomial."""

from __future__ import annotations

import random

import pytest

from manxue.verify import betabinom
from manxue.verify.catalog import LevelPrior, find, rivals
from manxue.verify.holm import holm
from manxue.verify.kernels import Sample, logprob_distance, sample_from, text_kernel
from manxue.verify.permutation import two_sample_test
from manxue.verify.posterior import posterior


def test_holm_steps_down() -> None:
    d = holm({"a": 0.001, "b": 0.006, "c": 0.009}, 0.01)
    assert [d[k].threshold for k in "abc"] == pytest.approx([0.01 / 3, 0.01 / 2, 0.01])
    assert d["a"].rejected and not d["b"].rejected
    assert not d["c"].rejected  # below its own threshold, but Holm stops at the first keep
    d = holm({"a": 0.001, "b": 0.004, "c": 0.2}, 0.01)
    assert d["a"].rejected and d["b"].rejected and not d["c"].rejected


def _noisy(rng: random.Random, shift: float) -> Sample:
    top = {"A": -1.0 + shift + rng.gauss(0, 0.02), "B": -1.5 + rng.gauss(0, 0.02)}
    return sample_from("x", [{"token": "A", "logprob": top["A"],
                              "top_logprobs": [{"token": k, "logprob": v} for k, v in top.items()]}])


def test_permutation_test_holds_its_level_and_has_power() -> None:
    rng = random.Random(3)

    def kernel(a: Sample, b: Sample) -> float:
        return float(2.718281828 ** (-logprob_distance(a, b, 0.0) / 0.1))

    def p_value(shift: float, seed: int) -> float:
        strata = [([_noisy(rng, 0.0) for _ in range(2)], [_noisy(rng, shift) for _ in range(2)])
                  for _ in range(8)]
        return two_sample_test(strata, kernel, permutations=999, seed=seed).p_value

    null = [p_value(0.0, s) for s in range(60)]
    assert sum(p <= 0.05 for p in null) <= 8  # ~3 expected at level 0.05
    assert all(p_value(0.3, s) < 0.005 for s in range(5))


def test_identical_samples_never_reject() -> None:
    same = Sample("hello there")
    r = two_sample_test([([same, same], [same, same])] * 5, text_kernel, permutations=9999)
    assert r.p_value == 1.0
    assert r.resolution == pytest.approx(1 / 3**5)  # it could have rejected: 3 splits per prompt


def test_kernel_ignores_noise_below_the_tolerance() -> None:
    a = sample_from("x", [{"token": "A", "logprob": -1.0, "top_logprobs": [
        {"token": "A", "logprob": -1.0}, {"token": "B", "logprob": -2.0}]}])
    b = sample_from("y", [{"token": "B", "logprob": -2.1, "top_logprobs": [
        {"token": "A", "logprob": -1.1}, {"token": "B", "logprob": -2.1}]}])
    assert logprob_distance(a, b, 0.25) == 0.0
    assert logprob_distance(a, b, 0.0) == pytest.approx(0.1)


def test_beta_binomial_lower_tail() -> None:
    priors = (LevelPrior(9, 1), LevelPrior(5, 5))
    assert betabinom.lower_tail([4, 4], [4, 4], priors) == pytest.approx(1.0)
    low = betabinom.lower_tail([0, 0], [4, 4], priors)
    assert 0 < low < 0.01
    assert betabinom.lower_tail([2, 1], [4, 4], priors) > low


def test_posterior_follows_tokenizer_reasoning_and_probes() -> None:
    claim = find("deepseek-reasoner")
    assert claim is not None and claim.id == "deepseek-r1"
    assert {m.id for m in rivals(claim)} >= {"deepseek-r1", "deepseek-v3", "r1-distill-qwen-7b"}
    strong = posterior(claim, {"tokenizer": {"families": ["deepseek"]},
                               "protocol": {"reasoning": True},
                               "capability": {"passes": [8, 7, 6], "trials": [8, 8, 8]}})
    assert strong is not None and next(iter(strong)) == "deepseek-r1" and strong["deepseek-r1"] > 0.99
    weak = posterior(claim, {"tokenizer": {"families": ["qwen2.5"]},
                             "capability": {"passes": [6, 1, 2], "trials": [8, 8, 8]}})
    assert weak is not None and next(iter(weak)) == "r1-distill-qwen-1.5b"
