"""Token usage as OpenAI and DeepSeek report it, read the same way for streams and bodies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_hit_tokens: int = 0
    cache_miss_tokens: int = 0
    reasoning_tokens: int = 0

    @classmethod
    def from_dict(cls, u: dict[str, Any] | None) -> Usage | None:
        """Read DeepSeek's fields, or OpenAI's `prompt_tokens_details.cached_tokens`."""
        counts = counts_of(u)
        return None if counts is None else cls(*counts)

    def to_dict(self) -> dict[str, Any]:
        """The usage object manxue itself emits (local engine), in DeepSeek's shape."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_cache_hit_tokens": self.cache_hit_tokens,
            "prompt_cache_miss_tokens": self.cache_miss_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cache_hit_tokens},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        }


def counts_of(u: Any) -> tuple[int, int, int, int, int] | None:
    """A usage object's prompt, completion, cache-hit, cache-miss and reasoning tokens, as
    Usage holds them (each a bounded count; what is missing or not a count is 0); None when it
    is no object. The one reading of usage: the ledger's, and what other APIs report."""
    if not isinstance(u, dict):
        return None
    prompt = _int(u.get("prompt_tokens"))
    hit = u.get("prompt_cache_hit_tokens")
    if hit is None:
        details = u.get("prompt_tokens_details")
        hit = details.get("cached_tokens") if isinstance(details, dict) else 0
    hit_n = _int(hit)
    miss = u.get("prompt_cache_miss_tokens")
    miss_n = _int(miss) if miss is not None else max(0, prompt - hit_n)
    cdetails = u.get("completion_tokens_details")
    reasoning = _int(cdetails.get("reasoning_tokens")) if isinstance(cdetails, dict) else 0
    return prompt, _int(u.get("completion_tokens")), hit_n, miss_n, reasoning


MAX_TOKENS = 1_000_000_000  # per field: an upstream reporting more is not believed past this


def _int(v: Any) -> int:
    """A token count as reported, bounded so that no upstream can overflow a ledger column."""
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        return 0
    return v if v <= MAX_TOKENS else MAX_TOKENS
