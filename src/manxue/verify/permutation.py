"""A stratified two-sample permutation test with the MMD statistic.

Per prompt (a stratum) the samples of both endpoints are pooled; the unbiased MMD² of the
actual split into "suspect" and "reference" is compared with its value under every other split
of the same pooled samples. The test statistic sums the prompts' MMD²; its permutation
distribution is drawn by choosing one split per prompt uniformly at random. With B draws the
p-value (1 + #{T_b ≥ T_obs}) / (B + 1) is valid whenever an honest endpoint's samples are
exchangeable with the reference's (same distribution), for any kernel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import combinations
from math import comb
from typing import TypeVar

import numpy as np
import numpy.typing as npt

T = TypeVar("T")


@dataclass(frozen=True)
class Result:
    statistic: float
    p_value: float
    per_stratum: tuple[float, ...]
    resolution: float
    """The smallest p-value these strata can give (more prompts or samples lower it)."""


def split_stats(gram: npt.NDArray[np.float64], nx: int) -> npt.NDArray[np.float64]:
    """Unbiased MMD² for every split of the pooled samples into nx and the rest; index 0 is the
    split that puts the first nx samples on one side (the observed one)."""
    n = gram.shape[0]
    ny = n - nx
    out = []
    for xs in combinations(range(n), nx):
        ys = [i for i in range(n) if i not in xs]
        kxx = gram[np.ix_(xs, xs)]
        kyy = gram[np.ix_(ys, ys)]
        kxy = gram[np.ix_(xs, ys)]
        within_x = (kxx.sum() - np.trace(kxx)) / (nx * (nx - 1))
        within_y = (kyy.sum() - np.trace(kyy)) / (ny * (ny - 1))
        out.append(within_x + within_y - 2.0 * kxy.mean())
    return np.array(out, dtype=np.float64)


def _distinct_splits(strata: Sequence[tuple[Sequence[T], Sequence[T]]]) -> float:
    """How many different values the statistic can take at most (a split and its mirror image
    give the same MMD when both sides have equal sizes)."""
    total = 1.0
    for xs, ys in strata:
        n = comb(len(xs) + len(ys), len(xs))
        total *= n // 2 if len(xs) == len(ys) else n
    return total


def gram_matrix(samples: Sequence[T], kernel: Callable[[T, T], float]) -> npt.NDArray[np.float64]:
    n = len(samples)
    g = np.ones((n, n), dtype=np.float64)
    for i in range(n):
        for j in range(i + 1, n):
            g[i, j] = g[j, i] = kernel(samples[i], samples[j])
    return g


def two_sample_test(strata: Sequence[tuple[Sequence[T], Sequence[T]]], kernel: Callable[[T, T], float],
         *, permutations: int = 9999, seed: int = 0) -> Result:
    """`strata`: per prompt, (suspect samples, reference samples), at least 2 of each."""
    stats = []
    for xs, ys in strata:
        if len(xs) < 2 or len(ys) < 2:
            raise ValueError("each prompt needs at least two samples from each side")
        stats.append(split_stats(gram_matrix([*xs, *ys], kernel), len(xs)))
    if not stats:
        raise ValueError("no prompts to compare")
    observed = float(sum(s[0] for s in stats))
    rng = np.random.default_rng(seed)
    total = np.zeros(permutations, dtype=np.float64)
    for s in stats:
        total += s[rng.integers(0, s.size, size=permutations)]
    slack = 1e-9 * max(1.0, abs(observed))
    exceed = int(np.count_nonzero(total >= observed - slack))
    p = (1 + exceed) / (permutations + 1)
    resolution = max(1.0 / (permutations + 1), 1.0 / _distinct_splits(strata))
    return Result(observed, p, tuple(float(s[0]) for s in stats), resolution)
