"""Sequential evidence from how surprising an endpoint's answers are to the reference model.

The audited endpoint is asked ordinary questions and returns ordinary text (no logprobs). The
reference model scores each answer token by token: at position i it knows the distribution
p_i it would sample from (at the request's temperature), its entropy H_i, and the surprise
of the token that was actually sent, -log p_i(x_i). If the endpoint samples from the reference
model, the token's *excess surprise*

    s_i = -log p_i(x_i) - H_i

has conditional mean exactly 0 given everything before it, whatever the text so far (it is a
martingale difference). A different model (a requantization, a distillate, a mixture that
answers some requests with a cheaper model) samples tokens the reference finds more
surprising on average: the mean of s_i moves up by about the per-token divergence. An honest
server that truncates its sampling (top-k, top-p, min-p defaults) only ever picks likelier
tokens, so the mean moves down: the test below stays valid (conservative) for it.

Each token is standardized by the spread the reference predicts for it, z_i = s_i / σ_i, and
two kinds of wealth are grown by betting on the z_i, which gives exact, always-valid
error control whenever the audit stops (Ville's inequality), with no normal approximation:

- **substitution** (H0: the endpoint's mean standardized excess surprise is at most τ, the
  TOLERANCE left for numerical noise between honest servers): wealth Π (1 + λ (z_i − τ)),
  mixed over a grid of λ; and, so that an endpoint answering only some requests with a
  substitute is not hidden by its honest answers, per answer: each answer's own wealth e_a
  (mean ≤ 1 under H0) enters as Π_a (1 − ρ + ρ e_a) for a grid of shares ρ. Both kinds are
  mixed with equal weights into one e-value, which reaches 1/α with probability at most α
  under H0. Crossing it means "substituted".
- **vouching** (H_δ: the endpoint's mean standardized excess surprise is at least δ): wealth
  Π (1 - λ (z'_i - δ)) on z clipped to [-C, C]. Crossing 1/α rules out every substitute that
  shifts the (clipped) mean by δ or more. The smallest such δ on the grid is the size of change
  the audit could have detected, and "authentic" is said only when it is small enough.
- **vouching against a mixture**: the token-level hypothesis H_δ asks every token's mean to be
  ≥ δ, which an endpoint answering only some requests with a substitute does not satisfy (its
  honest answers have mean 0). So vouching also needs the answer-level hypothesis A_d ruled
  out: each answer's mean z, clipped to [-ANSWER_CLIP, ANSWER_CLIP], has mean at least d over
  the requests (a share ρ of answers from a substitute shifting them by Δ gives d ≈ ρΔ).
  Wealth Π (1 - λ (m_a - d)) over answers, mixed over λ. The requests are drawn by the audit,
  so a vendor choosing which to substitute (by prompt, by time) still satisfies the bound in
  expectation and cannot escape it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

LAMBDAS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32)  # bets per token, mixed with equal weights
SHARES = (0.1, 0.25, 0.5)
"""Shares of answers bet to come from a substitute (the answer-level mixture wealth)."""
DELTAS = (0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5)  # vouching grid (z units)
CLIP = 4.0  # the vouching statistic is bounded to [-CLIP, CLIP]
ANSWER_DELTAS = (0.1, 0.15, 0.2, 0.25, 0.3)
"""Answer-level vouching grid: the mean over answers of each answer's (clipped) mean z."""
ANSWER_CLIP = 0.4
ANSWER_LAMBDAS = (0.5, 1.0, 2.0, 4.0)
ANSWER_RESOLUTION = 0.15
"""The answer-level shift vouching must rule out: half the answers shifted by 0.3 (Q2_K shifts
its answers by 0.27 to 0.61), or a third of them by the clip, 0.4."""
MAX_ANSWER_BET = 0.9  # one answer never costs more than this share of an answer-level wealth
TOLERANCE = 0.1
"""Standardized excess surprise per token allowed to an honest server: another attention
kernel, batch size or thread count moves the logits in their last bits, which shows as a mean
of +0.03 to +0.05 here (benchmarks/verify_likelihood.py); the Q2_K copy shows +0.27 to +0.61."""
SIGMA_FLOOR = 0.05  # nats: the spread assumed for a near-certain position
MAX_BET_SHARE = 0.5  # a bet never risks more than this share of wealth on one token

Floats = NDArray[np.float64]


@dataclass(frozen=True)
class ScoredAnswer:
    """An answer's tokens as the reference saw them, at the request's temperature: per token
    log p_i(x_i), the entropy H_i = -Σ p log p and the second moment Σ p (log p)²."""

    logprob: Floats
    entropy: Floats
    second: Floats

    @classmethod
    def of(cls, logprob: list[float], entropy: list[float], second: list[float]) -> ScoredAnswer:
        return cls(np.asarray(logprob, float), np.asarray(entropy, float),
                   np.asarray(second, float))

    def __len__(self) -> int:
        return len(self.logprob)

    @property
    def excess(self) -> Floats:
        """-log p_i(x_i) - H_i: mean 0 under the reference, whatever came before."""
        return -self.logprob - self.entropy

    @property
    def sigma(self) -> Floats:
        """The reference's own spread of -log p at each position (floored)."""
        var = np.maximum(self.second - self.entropy ** 2, 0.0)
        return np.maximum(np.sqrt(var), SIGMA_FLOOR)


def _logmeanexp(values: Floats) -> float:
    top = float(np.max(values))
    return top + math.log(float(np.mean(np.exp(values - top))))


@dataclass
class SurpriseTest:
    """Both wealth processes, updated one answer at a time.

    The bets are fixed before each token is seen (a grid of λ, capped per token by what the
    reference says z can fall to), so each wealth is a product of factors with conditional
    mean 1 (substitution, under H0) or at most 1 (vouching, under H_δ)."""

    alpha: float = 0.01
    tolerance: float = TOLERANCE
    lambdas: tuple[float, ...] = LAMBDAS
    deltas: tuple[float, ...] = DELTAS
    tokens: int = 0
    answers: int = 0
    sum_z: float = 0.0
    sum_excess: float = 0.0
    _log_sub: Floats = field(default_factory=lambda: np.zeros(0))  # per λ
    _log_vouch: Floats = field(default_factory=lambda: np.zeros(0))  # per δ, per λ
    _log_mix: Floats = field(default_factory=lambda: np.zeros(0))  # per share ρ
    _log_avouch: Floats = field(default_factory=lambda: np.zeros(0))  # per d, per λ
    _answer_z: list[float] = field(default_factory=list)  # mean z of each answer

    def __post_init__(self) -> None:
        self._lam = np.asarray(self.lambdas, float)
        self._delta = np.asarray(self.deltas, float)
        self._log_sub = np.zeros(len(self.lambdas))
        self._log_vouch = np.zeros((len(self.deltas), len(self.lambdas)))
        self._shares = np.asarray(SHARES, float)
        self._log_mix = np.zeros(len(SHARES))
        self._adelta = np.asarray(ANSWER_DELTAS, float)
        most = MAX_ANSWER_BET / (ANSWER_CLIP - self._adelta)  # m - d ≤ ANSWER_CLIP - d
        self._abets = np.minimum(np.asarray(ANSWER_LAMBDAS, float)[None, :], most[:, None])
        self._log_avouch = np.zeros(self._abets.shape)

    def add_answer(self, answer: ScoredAnswer) -> None:
        self.answers += 1
        if not len(answer):
            return
        sigma = answer.sigma
        z = answer.excess / sigma
        # 1 + λ(z - τ) ≥ 1 - MAX_BET_SHARE needs λ ≤ MAX_BET_SHARE / (H/σ + τ), since z ≥ -H/σ
        fall = np.maximum(answer.entropy / sigma + self.tolerance, 1e-12)
        bets = np.minimum(self._lam[None, :], (MAX_BET_SHARE / fall)[:, None])  # tokens × λ
        per_answer = np.log1p(bets * (z - self.tolerance)[:, None]).sum(axis=0)  # per λ
        self._log_sub += per_answer
        e_answer = float(np.mean(np.exp(np.minimum(per_answer, 700.0))))  # mixed over λ
        self._log_mix += np.log1p(self._shares * (e_answer - 1.0))
        zc = np.clip(z, -CLIP, CLIP)
        most = MAX_BET_SHARE / (CLIP - self._delta)  # z' - δ ≤ CLIP - δ
        vbets = np.minimum(self._lam[None, :], most[:, None])  # δ × λ
        # Σ_i log(1 - bet (z'_i - δ)), for every δ and λ
        self._log_vouch += np.log1p(
            -vbets[None, :, :] * (zc[:, None, None] - self._delta[None, :, None])).sum(axis=0)
        self.tokens += len(answer)
        self.sum_z += float(z.sum())
        self.sum_excess += float(answer.excess.sum())
        self._answer_z.append(float(z.mean()))
        m = min(max(float(z.mean()), -ANSWER_CLIP), ANSWER_CLIP)
        self._log_avouch += np.log1p(-self._abets * (m - self._adelta)[:, None])

    # ---- reading -------------------------------------------------------------------------------
    @property
    def substitution_evidence(self) -> float:
        """Log of the e-value against H0: the token-level wealths (one per λ) and the
        answer-level ones (one per share ρ), mixed with equal weights."""
        return _logmeanexp(np.concatenate([self._log_sub, self._log_mix]))

    def vouching_evidence(self, delta: float) -> float:
        return _logmeanexp(self._log_vouch[self.deltas.index(delta)])

    @property
    def threshold(self) -> float:
        return math.log(1.0 / self.alpha)

    @property
    def substituted(self) -> bool:
        return self.substitution_evidence >= self.threshold

    @property
    def detectable(self) -> float | None:
        """The smallest δ (mean standardized excess surprise per token) ruled out so far:
        a substitute shifting it by this much or more would have been caught. None: none is
        ruled out yet."""
        for delta in self.deltas:  # ascending: the first ruled out is the smallest
            if self.vouching_evidence(delta) >= self.threshold:
                return delta
        return None

    @property
    def detectable_answer_shift(self) -> float | None:
        """The smallest d ruled out for the mean over answers of each answer's mean z: a share
        ρ of answers from a substitute shifting them by Δ with ρ·min(Δ, ANSWER_CLIP) ≥ d
        would have been caught. None: none is ruled out yet."""
        for k, delta in enumerate(ANSWER_DELTAS):
            if _logmeanexp(self._log_avouch[k]) >= self.threshold:
                return delta
        return None

    def vouches(self, resolution: float, answer_resolution: float = ANSWER_RESOLUTION) -> bool:
        """Every substitute shifting the tokens by `resolution`, and every mixture shifting
        the answers by `answer_resolution` on average, is ruled out; nothing is flagged."""
        found, per_answer = self.detectable, self.detectable_answer_shift
        return (found is not None and found <= resolution and per_answer is not None
                and per_answer <= answer_resolution and not self.substituted)

    @property
    def mean_z(self) -> float:
        return self.sum_z / self.tokens if self.tokens else 0.0

    @property
    def mean_excess(self) -> float:
        return self.sum_excess / self.tokens if self.tokens else 0.0

    def outlying_answers(self, cut: float = 1.0) -> int:
        """Answers whose mean standardized excess is far out (a sign of a mixture)."""
        return sum(1 for z in self._answer_z if z > cut)

    def summary(self) -> dict[str, float | int | None]:
        return {"answers": self.answers, "tokens": self.tokens,
                "mean_excess_nats": round(self.mean_excess, 4), "mean_z": round(self.mean_z, 4),
                "log_e_substituted": round(self.substitution_evidence, 3),
                "log_threshold": round(self.threshold, 3), "tolerance": self.tolerance,
                "detectable_shift": self.detectable,
                "detectable_answer_shift": self.detectable_answer_shift,
                "outlying_answers": self.outlying_answers()}
