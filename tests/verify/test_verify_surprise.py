"""The excess-surprise test on a synthetic reference model: exact error control for an honest
sampler (truncating ones included), power against a different model and against a mixture,
and a stated size of change for vouching."""

from __future__ import annotations

import math

import numpy as np
import pytest

from manxue.verify.surprise import TOLERANCE, ScoredAnswer, SurpriseTest

VOCAB = 120


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _answer(rng: np.random.Generator, n: int, *, change: float = 0.0, top_k: int | None = None
            ) -> ScoredAnswer:
    """n positions of a random 'reference'; tokens drawn from it, or from a model whose logits
    differ by `change` × noise, or from it truncated to its top_k tokens."""
    logits = rng.normal(size=(n, VOCAB)) * 3.0
    ref = _log_softmax(logits)
    drawn = np.exp(_log_softmax(logits + change * rng.normal(size=(n, VOCAB))) if change else ref)
    if top_k is not None:
        cut = np.argsort(-drawn, axis=1)[:, top_k:]
        np.put_along_axis(drawn, cut, 0.0, axis=1)
        drawn /= drawn.sum(axis=1, keepdims=True)
    tokens = np.array([rng.choice(VOCAB, p=row) for row in drawn])
    p = np.exp(ref)
    return ScoredAnswer(ref[np.arange(n), tokens], -(p * ref).sum(axis=1), (p * ref * ref).sum(axis=1))


def _audit(seed: int, answers: int = 40, tokens: int = 32, **kw: float | int | None) -> SurpriseTest:
    """An audit of a synthetic endpoint; tolerance 0 (the exact null) unless given."""
    rng = np.random.default_rng(seed)
    mix = float(kw.pop("mix", 1.0) or 1.0)
    test = SurpriseTest(alpha=0.01, tolerance=float(kw.pop("tolerance", 0.0) or 0.0))
    for _ in range(answers):
        change = kw.get("change", 0.0) if rng.random() < mix else 0.0
        test.add_answer(_answer(rng, tokens, change=float(change or 0.0),
                                top_k=kw.get("top_k")))  # type: ignore[arg-type]
        if test.substituted:
            break
    return test


def test_an_honest_sampler_is_not_flagged_and_is_vouched_for():
    runs = [_audit(seed) for seed in range(20)]
    assert not any(t.substituted for t in runs)
    assert all(abs(t.mean_excess) < 0.1 for t in runs)
    assert sum(t.vouches(0.2) for t in runs) >= 16
    assert all(t.substitution_evidence < t.threshold for t in runs)


def test_truncated_sampling_by_an_honest_server_is_never_flagged():
    """top-k (like top-p or min-p) only picks likelier tokens: the evidence goes the other way."""
    for seed in range(10):
        t = _audit(seed, top_k=10)
        assert not t.substituted and t.mean_excess < 0


def test_a_different_model_is_caught_early():
    runs = [_audit(seed, change=1.5) for seed in range(10)]
    assert all(t.substituted for t in runs)
    assert max(t.answers for t in runs) <= 30  # stopped as soon as it was decisive
    assert all(t.mean_excess > 0.1 for t in runs)


def test_half_the_answers_from_another_model_is_caught():
    runs = [_audit(seed, answers=60, change=1.5, mix=0.5) for seed in range(10)]
    assert sum(t.substituted for t in runs) >= 9
    assert all(t.outlying_answers(0.2) >= 1 for t in runs)


def test_the_error_rate_is_controlled_at_any_stopping_time():
    """Ville: the wealth of an honest run ever reaches 1/alpha with probability at most alpha.
    With alpha = 0.2 and 100 runs watched at every answer, the count stays near or below 20."""
    crossed = 0
    for seed in range(100):
        rng = np.random.default_rng(1000 + seed)
        test = SurpriseTest(alpha=0.2, tolerance=0.0)
        for _ in range(15):
            test.add_answer(_answer(rng, 16))
            if test.substituted:
                crossed += 1
                break
    assert crossed <= 30  # 20 expected at most; 30 is beyond 2.5 sigma of Binomial(100, 0.2)


def test_empty_answers_and_the_summary():
    test = SurpriseTest()
    test.add_answer(ScoredAnswer.of([], [], []))
    assert test.tokens == 0 and test.answers == 1 and not test.substituted
    assert test.detectable is None and not test.vouches(1.0)
    assert test.substitution_evidence == pytest.approx(0.0)
    summary = test.summary()
    assert summary["log_threshold"] == pytest.approx(math.log(100), abs=1e-3)


def test_a_certain_position_answered_otherwise_is_strong_evidence():
    """Where the reference is all but certain, another token is a large excess, and the bets
    are capped so that no single token can wipe out the wealth."""
    test = SurpriseTest()
    sure = ScoredAnswer.of([-12.0], [0.001], [0.0005])
    test.add_answer(sure)
    assert test.substitution_evidence > 0
    test = SurpriseTest()
    test.add_answer(ScoredAnswer.of([-1e-4] * 50, [0.001] * 50, [0.0005] * 50))
    assert math.isfinite(test.substitution_evidence)


def test_the_tolerance_absorbs_numerical_noise_between_honest_servers():
    """Logits that differ in their last bits (another kernel) shift the surprise a little:
    with the default tolerance such a server is not flagged, a substitute still is."""
    noisy = [_audit(seed, answers=60, change=0.3, tolerance=TOLERANCE) for seed in range(10)]
    assert not any(t.substituted for t in noisy)
    assert all(abs(t.mean_z) < TOLERANCE for t in noisy)
    caught = [_audit(seed, answers=60, change=1.5, tolerance=TOLERANCE) for seed in range(5)]
    assert all(t.substituted for t in caught)


def _scored(z: np.ndarray) -> ScoredAnswer:
    """Tokens with standardized excess surprise exactly z (entropy 5, spread 1)."""
    n = len(z)
    return ScoredAnswer.of(list(-(5.0 + np.maximum(z, -5.0))), [5.0] * n, [26.0] * n)


def test_a_mixture_hiding_in_short_answers_is_never_vouched_for():
    """Half the requests answered by a substitute (shift 0.5 per token) with short answers,
    the rest honest and long: pooled over tokens the shift is tiny (the token-level bound of
    0.1 is met), but over answers it is half of 0.4, the clip: vouching must not happen."""
    vouched = token_level_met = 0
    for seed in range(10):
        rng = np.random.default_rng(seed)
        test = SurpriseTest(alpha=0.01, tolerance=TOLERANCE)
        for _ in range(60):
            short = rng.random() < 0.5
            test.add_answer(_scored(rng.normal(0.5, 1.0, 8) if short else rng.normal(0, 1, 200)))
        vouched += test.vouches(0.1)
        token_level_met += (test.detectable or 1.0) <= 0.1
        assert (test.detectable_answer_shift or 1.0) > 0.15
    assert vouched == 0 and token_level_met >= 8


def test_honest_answers_rule_out_the_answer_level_shift():
    """An honest server on other hardware (+0.04 per token, 60-250 tokens per answer): the
    answer-level bound of 0.15 is met within 30 answers, both bounds within 60."""
    runs, met = [], []
    for seed in range(10):
        rng = np.random.default_rng(100 + seed)
        test = SurpriseTest(alpha=0.005, tolerance=TOLERANCE)
        while not test.vouches(0.1) and test.answers < 60:
            test.add_answer(_scored(rng.normal(0.04, 1.0, int(rng.integers(60, 250)))))
            if len(met) == seed and (test.detectable_answer_shift or 1.0) <= 0.15:
                met.append(test.answers)
        runs.append(test)
    assert all(t.vouches(0.1) for t in runs) and not any(t.substituted for t in runs)
    assert len(met) == 10 and max(met) <= 30
    assert "detectable_answer_shift" in runs[0].summary()
