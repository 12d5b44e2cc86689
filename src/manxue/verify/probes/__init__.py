"""Capability probes generated fresh per audit from seeded templates, graded automatically.

    probes = generate(seed=7, count=12)      # levels 1, 2, 3 in turn
    probes[0].grade(answer_text) -> bool

Levels are difficulty bands; the pass rate each candidate model reaches at each level is its
prior (data/candidates.toml), measured for the test-bench models, anchored to published
scores for the DeepSeek family.
"""

from __future__ import annotations

from collections.abc import Callable
from random import Random

from manxue.verify.probes import arithmetic, facts, hanzi, logic, words
from manxue.verify.probes.base import Probe

Generator = Callable[[Random], Probe]

BY_LEVEL: dict[int, tuple[Generator, ...]] = {
    1: (arithmetic.add, arithmetic.larger, words.upper, facts.capital),
    2: (arithmetic.two_step, arithmetic.linear, words.count_letter, words.reverse_short,
        logic.order3, hanzi.common),
    3: (arithmetic.chained, arithmetic.modpow, arithmetic.system, words.reverse_long,
        logic.order5, hanzi.rare),
}


def generate(seed: int, count: int) -> list[Probe]:
    """`count` probes, levels in turn (1, 2, 3, 1, …), kinds drawn at random within a level."""
    rng = Random(f"probes:{seed}")
    levels = sorted(BY_LEVEL)
    out: list[Probe] = []
    for i in range(count):
        level = levels[i % len(levels)]
        out.append(rng.choice(BY_LEVEL[level])(rng))
    return out


__all__ = ["BY_LEVEL", "Probe", "generate"]
