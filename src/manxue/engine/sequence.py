"""One request as the engine thread sees it: its llama.cpp sequence slot, its prompt, and the
text it releases token by token (stop strings, UTF-8 boundaries, reasoning split, logprobs)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from manxue.engine.grammar import GrammarSampler
from manxue.engine.handles import Delta, GenerationRequest, Handle
from manxue.engine.model_file import ModelFile
from manxue.engine.reasoning import ReasoningSplitter
from manxue.engine.sampling import SequenceSampler, TokenLogprob
from manxue.engine.scoring import ScoreState
from manxue.engine.text_stream import StopFilter, Utf8Text
from manxue.protocol.usage import Usage


@dataclass(slots=True)
class Slot:
    """One llama.cpp sequence id and the tokens whose KV it holds."""

    seq_id: int
    tokens: npt.NDArray[np.int32]
    n: int = 0

    def committed(self) -> npt.NDArray[np.int32]:
        return self.tokens[: self.n]

    def commit(self, toks: npt.NDArray[np.int32] | list[int]) -> None:
        k = len(toks)
        self.tokens[self.n : self.n + k] = toks
        self.n += k


@dataclass(eq=False)
class Sequence:
    """One request inside the engine thread."""

    handle: Handle
    model: ModelFile
    order: int
    target: npt.NDArray[np.int32] = field(init=False)
    """Tokens that must be in the KV cache before decoding continues (the prompt at first)."""
    needs_logits: bool = True
    """True while the target's last token must produce logits (first admission)."""
    slot: Slot | None = None
    n_fed: int = 0
    pending: int | None = None
    n_generated: int = 0
    hit: int | None = None
    wait_for: tuple[Sequence, int] | None = None
    """A running sequence still reading a prompt prefix this one shares, and its length."""
    reasoning_tokens: int = 0
    finished: bool = False
    sampler: SequenceSampler = field(init=False)
    utf8: Utf8Text = field(default_factory=Utf8Text)
    stop: StopFilter[dict[str, Any]] = field(init=False)
    splitter: ReasoningSplitter = field(init=False)

    def __post_init__(self) -> None:
        req = self.handle.request
        self.target = req.prompt
        self.sampler = SequenceSampler(req.params)
        if req.grammar is not None:
            self.sampler.grammar = GrammarSampler(self.model.vocab, req.grammar, self.model.n_vocab)
        self.stop = StopFilter(req.params.stop)
        self.splitter = ReasoningSplitter(enabled=req.reasoning, start_inside=req.starts_in_reasoning)
        if req.score is not None:
            self.needs_logits = False  # its logits are read while its prompt is fed

    @property
    def prefilling(self) -> bool:
        return self.n_fed < self.target.size

    @property
    def request(self) -> GenerationRequest:
        return self.handle.request

    @property
    def score(self) -> ScoreState | None:
        """Set for a scoring request, which only reads its prompt (scoring.py)."""
        return self.handle.request.score

    @property
    def reuse_limit(self) -> int:
        """How many target tokens may come from a shared or saved prefix: never those whose
        logits are still needed."""
        score = self.handle.request.score
        if score is not None:
            return min(score.next_out, self.target.size)
        return self.target.size - 1 if self.needs_logits else self.target.size

    def usage(self) -> Usage:
        prompt = int(self.request.prompt.size)
        hit = self.hit or 0
        return Usage(prompt_tokens=prompt, completion_tokens=self.n_generated, cache_hit_tokens=hit,
                     cache_miss_tokens=prompt - hit, reasoning_tokens=self.reasoning_tokens)

    def accept(self, token: int, lp: TokenLogprob | None) -> str | None:
        """Take a sampled token, queue the text it releases; a finish reason ends the answer."""
        self.n_generated += 1
        self.sampler.observe(token)
        was_reasoning = self.splitter.in_reasoning
        reason: str | None = None
        if self.model.eog_mask[token]:
            segments = self.stop.finish()
            segments.append((self.utf8.finish(), None))
            reason = "stop"
        else:
            piece = self.model.piece(token)
            item = self._logprob_entry(token, piece, lp) if lp is not None else None
            segments, stopped = self.stop.feed(self.utf8.feed(piece), item)
            if stopped:
                reason = "stop"
            elif self.n_generated >= self.request.max_new_tokens:
                segments += self.stop.finish()
                segments.append((self.utf8.finish(), None))
                reason = "length"
        self._emit(segments, final=reason is not None)
        if was_reasoning or self.splitter.in_reasoning:
            self.reasoning_tokens += 1
        if reason is None:
            self.pending = token
        return reason

    def end_early(self) -> None:
        """The context is exhausted: release what the stop filter held back."""
        segments = self.stop.finish()
        segments.append((self.utf8.finish(), None))
        self._emit(segments, final=True)

    def _emit(self, segments: list[tuple[str, dict[str, Any] | None]], *, final: bool) -> None:
        content: list[str] = []
        reasoning: list[str] = []
        entries: list[dict[str, Any]] = []
        for text, item in segments:
            if text:
                r, c = self.splitter.feed(text)
                if r:
                    reasoning.append(r)
                if c:
                    content.append(c)
            if item is not None:
                entries.append(item)
        if final:
            r, c = self.splitter.finish()
            if r:
                reasoning.append(r)
            if c:
                content.append(c)
        if content or reasoning or entries or self.n_generated == 1:
            self.handle.push(Delta("".join(content), "".join(reasoning), entries or None,
                                   self.n_generated))

    def _logprob_entry(self, token: int, piece: bytes, lp: TokenLogprob) -> dict[str, Any]:
        top = []
        for t, v in lp.top:
            b = self.model.piece(t)
            top.append({"token": b.decode("utf-8", "replace"), "logprob": v, "bytes": list(b)})
        return {"token": piece.decode("utf-8", "replace"), "logprob": lp.logprob,
                "bytes": list(piece), "top_logprobs": top}
