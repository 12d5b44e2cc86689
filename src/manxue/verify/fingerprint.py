"""Tokenizer fingerprint: crafted texts whose token counts tell tokenizer families apart.

Each audit draws its own text from a pool of segments (scripts, digits, emoji, symbols) and
sends it repeated `REPEATS` times in three requests. Every candidate family's exact count of
each request's text is known offline. For the right family, the endpoint's
`usage.prompt_tokens` minus that count is the same constant for all three requests (the chat
template's overhead, plus any padding); for a wrong family the difference drifts with the
number of repeats. A family fits when the differences spread over at most `SPREAD` tokens.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from itertools import combinations
from statistics import median

from manxue.verify.tokenizers import Family

REPEATS = (1, 3, 6)
SPREAD = 1
_MIN_SEPARATION = 3
SEGMENTS = (
    "满血验证苹果香蕉", "0123456789", "😀🍎🚀", "Größenverhältnisse", "모델검증", "κατάσταση",
    "))];", "ℵ∂ζ", "\t\t    x", "Привет, мир", "สวัสดีครับ", "١٢٣٤٥٦", "naïve café", "függvény",
    "∑∫√∞≈", "<div class=x>", "ﾊﾝｶｸｶﾀｶﾅ", "東京特許許可局", "ゆっくりしていってね", "1e-3f;",
    "Ελληνικά", "hello_world()", "₿€¥£", "ẞüßçñ",
)


@dataclass(frozen=True)
class FingerprintTexts:
    """The texts one audit sends and each family's count of them (a capability question is
    a `manxue.verify.probes.Probe`, something else)."""

    unit: str
    contents: tuple[str, ...]
    counts: dict[str, tuple[int, ...]]
    ambiguous: tuple[tuple[str, str], ...]


def craft(rng: random.Random, families: dict[str, Family]) -> FingerprintTexts:
    """Texts for this audit; families that the texts cannot tell apart are listed."""
    best = _draw(rng, families)
    for _ in range(23):
        if not best.ambiguous:
            break
        probe = _draw(rng, families)
        if len(probe.ambiguous) < len(best.ambiguous):
            best = probe
    return best


def _draw(rng: random.Random, families: dict[str, Family]) -> FingerprintTexts:
    unit = " " + " ".join(rng.sample(SEGMENTS, 4))
    contents = tuple("Count me:" + unit * k for k in REPEATS)
    counts = {n: tuple(f.count(c) for c in contents) for n, f in families.items()}
    ambiguous = tuple((a, b) for a, b in combinations(sorted(counts), 2)
                      if _separation(counts[a], counts[b]) < _MIN_SEPARATION)
    return FingerprintTexts(unit, contents, counts, ambiguous)


def _separation(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    return max(diffs) - min(diffs)


@dataclass(frozen=True)
class Fit:
    family: str
    offsets: tuple[int, ...]
    slope: float
    fits: bool

    @property
    def offset(self) -> float:
        return float(median(self.offsets))


def fit(observed: list[int], counts: dict[str, tuple[int, ...]]) -> list[Fit]:
    """One fit per family, best first: offsets (observed − count) and the slope of observed
    prompt tokens on the family's counts (1.0 for the right family)."""
    out = []
    for name, xs in counts.items():
        offsets = tuple(y - x for y, x in zip(observed, xs, strict=True))
        out.append(Fit(name, offsets, _slope(list(xs), observed),
                       max(offsets) - min(offsets) <= SPREAD))
    return sorted(out, key=lambda f: (not f.fits, abs(f.slope - 1.0)))


def _slope(xs: list[int], ys: list[int]) -> float:
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return float("nan")
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
