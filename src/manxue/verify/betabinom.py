"""Beta-binomial arithmetic for capability probes: likelihoods and a lower-tail p-value.

A model's pass rate at one level is uncertain (Beta(a, b), from its prior); the number of
passes in n probes of that level is then beta-binomial. Levels are independent given the model.
"""

from __future__ import annotations

from math import comb, exp, lgamma, log

from manxue.verify.catalog import LevelPrior


def _lbeta(a: float, b: float) -> float:
    return lgamma(a) + lgamma(b) - lgamma(a + b)


def log_pmf(k: int, n: int, prior: LevelPrior) -> float:
    return log(comb(n, k)) + _lbeta(k + prior.a, n - k + prior.b) - _lbeta(prior.a, prior.b)


def log_likelihood(passes: list[int], trials: list[int], priors: tuple[LevelPrior, ...]) -> float:
    return sum(log_pmf(k, n, p) for k, n, p in zip(passes, trials, priors, strict=True))


def lower_tail(passes: list[int], trials: list[int], priors: tuple[LevelPrior, ...]) -> float:
    """P(total passes ≤ observed total) for a model with these priors: small means the
    endpoint did worse than the claimed model would."""
    dist = [1.0]
    for n, prior in zip(trials, priors, strict=True):
        pmf = [exp(log_pmf(k, n, prior)) for k in range(n + 1)]
        new = [0.0] * (len(dist) + n)
        for i, p in enumerate(dist):
            for k, q in enumerate(pmf):
                new[i + k] += p * q
        dist = new
    return min(1.0, sum(dist[: sum(passes) + 1]))
