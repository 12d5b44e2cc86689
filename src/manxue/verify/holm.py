"""Holm–Bonferroni: combine the checks' p-values so that an honest endpoint is flagged with
probability at most `alpha`, whatever the dependence between the checks.

Sort the m p-values ascending, p(1) ≤ … ≤ p(m). Reject check (i) while p(i) ≤ alpha/(m − i + 1);
stop at the first that is not rejected. If every check's p-value is valid (P(p ≤ t) ≤ t for an
honest endpoint), the chance that any check rejects an honest endpoint is at most alpha.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    threshold: float
    rejected: bool


def holm(p_values: dict[str, float], alpha: float) -> dict[str, Decision]:
    order = sorted(p_values, key=lambda name: (p_values[name], name))
    m = len(order)
    out: dict[str, Decision] = {}
    still = True
    for i, name in enumerate(order):
        threshold = alpha / (m - i)
        still = still and p_values[name] <= threshold
        out[name] = Decision(threshold, still)
    return out
