"""What one sampled answer looks like to the two-sample test, and how alike two answers are.

With logprobs (both sides expose them): a sample is, per generated position, the sampled
token with its logprob and the top-k alternatives (token → logprob) the endpoint listed. Two
samples of the same prompt share the context of position 0, and of every later position
while their sampled tokens agree, so there their distributions must match if the weights do.
The distance is the mean, over compared positions and over the union of listed tokens (plus
the sampled token where both sampled the same one), of |Δ logprob| less a tolerance (the
numerical noise between honest servers: batching, kernels, cached prefixes); the kernel is
exp(−distance / LOGPROB_SCALE).

Without logprobs: the Tanimoto (Jaccard) kernel on the sets of character 3-grams of the text.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import exp
from typing import Any

LOGPROB_SCALE = 0.1
_FLOOR = -30.0


@dataclass(frozen=True)
class Sample:
    text: str
    tokens: tuple[str, ...] | None = None
    chosen: tuple[float, ...] | None = None
    """The logprob of each sampled token."""
    steps: tuple[dict[str, float], ...] | None = None
    """The top-k alternatives at each position (token → logprob), as the endpoint listed them."""

    @property
    def has_logprobs(self) -> bool:
        return self.steps is not None and len(self.steps) > 0


def sample_from(text: str, logprobs: list[dict[str, Any]] | None) -> Sample:
    """Read OpenAI's `choices[0].logprobs.content` (token, logprob, top_logprobs)."""
    if not logprobs:
        return Sample(text)
    tokens: list[str] = []
    chosen: list[float] = []
    steps: list[dict[str, float]] = []
    for item in logprobs:
        if not isinstance(item, dict):
            continue
        steps.append({str(t.get("token")): float(t.get("logprob", _FLOOR))
                      for t in item.get("top_logprobs") or [] if isinstance(t, dict)})
        tokens.append(str(item.get("token")))
        chosen.append(float(item.get("logprob", _FLOOR)))
    return Sample(text, tuple(tokens), tuple(chosen), tuple(steps))


def logprob_distance(a: Sample, b: Sample, tolerance: float) -> float:
    if a.steps is None or b.steps is None or a.tokens is None or b.tokens is None \
            or a.chosen is None or b.chosen is None:
        raise ValueError("both samples need logprobs")
    total, compared = 0.0, 0
    for i, (sa, sb) in enumerate(zip(a.steps, b.steps, strict=False)):
        fa, fb = min(sa.values(), default=_FLOOR), min(sb.values(), default=_FLOOR)
        diffs = [abs(sa.get(t, fa) - sb.get(t, fb)) for t in set(sa) | set(sb)]
        same = a.tokens[i] == b.tokens[i]
        if same:
            diffs.append(abs(a.chosen[i] - b.chosen[i]))
        excess = [max(0.0, d - tolerance) for d in diffs]
        total += sum(excess) / len(excess) if excess else 0.0
        compared += 1
        if not same:
            break  # the contexts differ from here on
    return total / compared if compared else 0.0


def logprob_kernel(a: Sample, b: Sample, tolerance: float) -> float:
    return exp(-logprob_distance(a, b, tolerance) / LOGPROB_SCALE)


def _grams(text: str) -> set[str]:
    t = " ".join(text.lower().split())
    return {t[i:i + 3] for i in range(max(1, len(t) - 2))} if t else set()


def text_kernel(a: Sample, b: Sample) -> float:
    ga, gb = _grams(a.text), _grams(b.text)
    if not ga and not gb:
        return 1.0
    return len(ga & gb) / len(ga | gb)
