"""The reference model that scores answers: a GGUF file loaded by the embedded engine.

    async with open_scorer("smollm2.gguf") as scorer:
        answer = await scorer.score(messages, "The moon is ...", temperature=0.7)
        answer.logprob, answer.entropy, answer.second   # per token, at that temperature

Scoring needs no logprobs from the audited endpoint: it only needs the reference's weights.
The gateway can also hand an audit one of its own local engines (`EngineScorer(engine)`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from manxue.verify.surprise import ScoredAnswer


class Scorer(Protocol):
    """What the likelihood check needs from a reference model."""

    name: str

    async def score(self, messages: list[dict[str, Any]], text: str, *,
                    temperature: float) -> ScoredAnswer: ...


class EngineScorer:
    """A scorer on an embedded engine (`manxue.engine.Engine`); closes it only if it owns it."""

    def __init__(self, engine: Any, name: str, *, owned: bool = False) -> None:
        self.engine = engine
        self.name = name
        self._owned = owned

    async def score(self, messages: list[dict[str, Any]], text: str, *,
                    temperature: float) -> ScoredAnswer:
        scored = await self.engine.score(messages, text, temperature=temperature, moments=True)
        return ScoredAnswer.of(scored.logprobs, scored.entropies, scored.second_moments)

    async def __aenter__(self) -> EngineScorer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owned:
            from manxue.engine.engine import release_engine

            release_engine(self.engine)
            self._owned = False


def open_scorer(path: str | Path, **options: Any) -> EngineScorer:
    """Load a GGUF file as the reference (shared with a gateway engine of the same file)."""
    from manxue.engine.engine import acquire_engine

    p = Path(path).expanduser()
    engine = acquire_engine(p, {"prefix_cache": True, **options}, where="reference")
    return EngineScorer(engine, p.name, owned=True)
