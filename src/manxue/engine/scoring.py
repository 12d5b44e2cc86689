"""Scoring a given continuation: log p(token_i | context, token_<i) for each of its tokens.

A scoring request is a GenerationRequest whose `score` field is a ScoreState. The scheduler
treats it like a prompt that never generates: it is queued, batched, chunked, preempted and
cancelled like any other sequence, and reuses shared or saved prefixes of its context. Its
tokens are context + continuation[:-1]; the batch asks llama.cpp for logits at every position
from the context's last token on (llama_batch.logits), and the engine thread turns each such
row into the log-probability of the token that follows it: a log-softmax of the raw logits
(no penalties; at temperature 1 by default, exactly as generation reports its `logprobs`),
optionally with the top alternatives and the distribution's entropy and second moment. A
saved or shared prefix is only ever used for positions whose logits are not needed.

The continuation text is tokenized on its own, without BOS and without parsing special tokens,
i.e. as the tokens that generation, starting right after the rendered prompt, would emit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from manxue.engine.model_file import ModelFile
from manxue.engine.sampling import MAX_TOP_LOGPROBS
from manxue.errors import InvalidParameters, InvalidRequest

# ggml's CPU flash attention has three kernels: batches of 64 rows or more (GGML_FA_TILE_Q)
# are tiled with f32 accumulators; smaller ones ("one chunk") round Q to f16 and accumulate
# V in f16, as every decode step of generation does; a batch of exactly one row over a view
# of 512+ KV cells (llama.cpp pads the view to 256: past 256 cells in use) splits the cells
# across threads. A token's log-probability differs between them by up to ~0.15-0.3 nat
# (SmolLM2). The steps that read a scoring request's logits stay within 63 rows, and a
# context is fed in steps of its own only where its prompt, generating, would also be fed in
# a larger chunk: scored values then equal generated ones bit for bit, except where a lone
# generation decodes past 256 cells (split kernel; see docs/local-engine.md).
EXACT_ROWS = 63


@dataclass(frozen=True, slots=True)
class Alternative:
    """One of the most likely tokens at a position."""

    token: int
    text: str
    logprob: float


@dataclass(frozen=True, slots=True)
class Scored:
    """The model's log-probabilities (natural log) of a continuation's tokens."""

    tokens: list[int]
    texts: list[str]
    """Each token's text (its bytes decoded as UTF-8; a character split over tokens shows as U+FFFD)."""
    logprobs: list[float]
    """log p(token_i | context, token_<i), of the distribution at `temperature`."""
    total_logprob: float
    """Sum of `logprobs`: log p(continuation | context)."""
    top_logprobs: list[list[Alternative]] | None
    """Per position the `top_logprobs` most likely tokens, best first (None when not asked)."""
    context_tokens: int
    """Tokens the continuation was conditioned on (the rendered prompt)."""
    cached_tokens: int = 0
    """Context tokens reused from a shared or saved prefix instead of being computed."""
    temperature: float = 1.0
    entropies: list[float] | None = None
    """With `moments`: per position the distribution's entropy H = -Σ p log p."""
    second_moments: list[float] | None = None
    """With `moments`: per position Σ p (log p)², so Var[-log p] = second - H²."""

    @property
    def perplexity(self) -> float:
        """exp(-mean logprob); 1.0 for an empty continuation."""
        n = len(self.logprobs)
        return float(np.exp(-self.total_logprob / n)) if n else 1.0


class RowStats(NamedTuple):
    """What one batch of logits rows gives a scoring request (one entry per row)."""

    logprob: npt.NDArray[np.float32]
    top_ids: npt.NDArray[np.int32]
    top_values: npt.NDArray[np.float32]
    entropy: npt.NDArray[np.float64] | None
    second: npt.NDArray[np.float64] | None


@dataclass(eq=False)
class ScoreState:
    """Engine-thread state of one scoring request: which positions still need logits, and
    what was read from those already seen."""

    first_out: int
    """Position whose logits predict the first continuation token (the context's last)."""
    continuation: npt.NDArray[np.int32]
    top_k: int = 0
    temperature: float = 1.0
    moments: bool = False
    next_out: int = field(init=False)
    """First position whose logits have not been read yet."""
    logprobs: npt.NDArray[np.float32] = field(init=False)
    top_ids: npt.NDArray[np.int32] = field(init=False)
    top_values: npt.NDArray[np.float32] = field(init=False)
    entropy: npt.NDArray[np.float64] = field(init=False)
    second: npt.NDArray[np.float64] = field(init=False)

    def __post_init__(self) -> None:
        n = self.continuation.size
        self.next_out = self.first_out
        self.logprobs = np.zeros(n, dtype=np.float32)
        self.top_ids = np.zeros((n, self.top_k), dtype=np.int32)
        self.top_values = np.zeros((n, self.top_k), dtype=np.float32)
        self.entropy = np.zeros(n if self.moments else 0, dtype=np.float64)
        self.second = np.zeros(n if self.moments else 0, dtype=np.float64)

    def outputs_in(self, start: int, take: int) -> tuple[int, int]:
        """For positions [start, start + take) about to be decoded: the offset of the first
        one whose logits are wanted, and how many (always a contiguous tail of the range)."""
        lo = max(start, self.next_out)
        return lo - start, max(0, start + take - lo)

    def reading(self, start: int) -> bool:
        """Whether the next step, feeding from `start`, should read logits: the context left
        (before the position of its last token) is short enough to share that step, as it
        is fed to the same kernels as the scored positions when generating."""
        return self.first_out - start <= EXACT_ROWS

    def clip(self, start: int, take: int) -> int:
        """A long context is fed up to `first_out` in prompt-sized chunks of its own, as a
        generated answer's prompt is."""
        if not self.reading(start):
            return min(take, self.first_out - start)
        return take

    def take(self, rows: npt.NDArray[np.float32]) -> None:
        """Read the logits of the next `len(rows)` wanted positions, in order."""
        k = rows.shape[0]
        j = self.next_out - self.first_out
        got = row_stats(rows, self.continuation[j : j + k], self.top_k,
                        temperature=self.temperature, moments=self.moments)
        self.logprobs[j : j + k] = got.logprob
        self.top_ids[j : j + k] = got.top_ids
        self.top_values[j : j + k] = got.top_values
        if got.entropy is not None and got.second is not None:
            self.entropy[j : j + k] = got.entropy
            self.second[j : j + k] = got.second
        self.next_out += k


def row_stats(rows: npt.NDArray[np.float32], picks: npt.NDArray[np.int32], top_k: int, *,
              temperature: float = 1.0, moments: bool = False) -> RowStats:
    """Per row of raw logits, of softmax(logits / temperature): the log-probability of the
    `picks` token, the `top_k` best (ids and log-probabilities, best first) and, with
    `moments`, the entropy and Σ p (log p)². At temperature 1 the log-probabilities are
    computed exactly as sampling.sample_batch computes `logprobs`."""
    raw = np.asarray(rows, dtype=np.float32)
    if temperature != 1.0:
        raw = raw * np.float32(1.0 / temperature)
    m = raw.max(axis=1, keepdims=True)
    lse = (np.log(np.exp(raw - m).sum(axis=1, keepdims=True)) + m)[:, 0]
    n, vocab = raw.shape
    picked = raw[np.arange(n), picks.astype(np.intp)] - lse
    entropy = second = None
    if moments:
        logp = raw - lse[:, None]
        p = np.exp(logp)
        entropy = -np.einsum("ij,ij->i", p, logp, dtype=np.float64)
        second = np.einsum("ij,ij,ij->i", p, logp, logp, dtype=np.float64)
    if not top_k:
        empty = np.zeros((n, 0), dtype=np.int32)
        return RowStats(picked, empty, empty.astype(np.float32), entropy, second)
    ids = np.argpartition(raw, vocab - top_k, axis=1)[:, vocab - top_k:]
    vals = np.take_along_axis(raw, ids, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    ids = np.take_along_axis(ids, order, axis=1)
    vals = np.take_along_axis(vals, order, axis=1) - lse[:, None]
    return RowStats(picked, ids.astype(np.int32), vals.astype(np.float32), entropy, second)


def check_temperature(temperature: float) -> float:
    """A temperature to score at: above 0 (InvalidParameters otherwise)."""
    if (isinstance(temperature, bool) or not isinstance(temperature, int | float)
            or not 0.0 < temperature <= 100.0):
        raise InvalidParameters("'temperature' must be a number above 0 (at 0 the answer is "
                                f"the model's greedy choice, with no distribution to score), "
                                f"not {temperature!r}", param="temperature")
    return float(temperature)


def check_top_logprobs(top_logprobs: int) -> int:
    """How many alternatives per position: 0..MAX_TOP_LOGPROBS (InvalidParameters otherwise)."""
    if isinstance(top_logprobs, bool) or not isinstance(top_logprobs, int) or not (
            0 <= top_logprobs <= MAX_TOP_LOGPROBS):
        raise InvalidParameters(f"'top_logprobs' must be an integer between 0 and "
                                f"{MAX_TOP_LOGPROBS}, not {top_logprobs!r}", param="top_logprobs")
    return top_logprobs


def continuation_tokens(model: ModelFile, continuation: str | Sequence[int]) -> list[int]:
    """The continuation's token ids: text is tokenized alone (no BOS, special tokens as plain
    text) and must read back byte for byte; ids are checked against the vocabulary."""
    if isinstance(continuation, str):
        tokens = model.tokenize(continuation, add_bos=False, special=False)
        if b"".join(model.piece(t) for t in tokens) != continuation.encode("utf-8"):
            raise InvalidParameters("this model's tokenizer does not reproduce the continuation "
                                    "text exactly; pass its token ids instead",
                                    param="continuation")
        return tokens
    return token_ids(continuation, model.n_vocab, "continuation")


def token_ids(tokens: Sequence[int], n_vocab: int, param: str) -> list[int]:
    """Caller-given token ids, checked against the vocabulary (llama_decode fails the whole
    batch on a bad one)."""
    out = [int(t) for t in tokens]
    if any(not 0 <= t < n_vocab for t in out):
        raise InvalidParameters(f"{param}: token ids must be in 0..{n_vocab - 1}", param=param)
    return out


def check_length(n_context: int, n_continuation: int, ctx_limit: int) -> None:
    """Context and continuation together must fit one sequence's context."""
    if n_context == 0:
        raise InvalidRequest("the context to score after is empty", param="messages")
    total = n_context + n_continuation
    if total > ctx_limit:
        raise InvalidRequest(
            f"context ({n_context} tokens) and continuation ({n_continuation} tokens) come to "
            f"{total} tokens; this model's context holds {ctx_limit}",
            param="continuation", code="context_length_exceeded")


def scored(model: ModelFile, state: ScoreState, tokens: list[int], n_context: int,
           cached: int) -> Scored:
    """The caller's result from a finished ScoreState (an empty one for no tokens)."""
    texts = [model.piece(t).decode("utf-8", "replace") for t in tokens]
    top: list[list[Alternative]] | None = None
    if state.top_k:
        top = [[Alternative(int(t), model.piece(int(t)).decode("utf-8", "replace"), float(v))
                for t, v in zip(ids, vals, strict=True)]
               for ids, vals in zip(state.top_ids, state.top_values, strict=True)]
    total = float(np.sum(state.logprobs, dtype=np.float64))
    entropies = [float(v) for v in state.entropy] if state.moments else None
    seconds = [float(v) for v in state.second] if state.moments else None
    return Scored(tokens, texts, [float(v) for v in state.logprobs], total, top, n_context,
                  cached, state.temperature, entropies, seconds)
