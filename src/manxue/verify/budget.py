"""What an audit spends: requests and tokens per check, against a cap on requests.

The cap (`--budget-requests`) counts requests to the audited endpoint only; requests to the
reference are tallied on their own, since they are paid elsewhere. A request that would go
over the cap is not sent: `BudgetExhausted` is raised instead and the check reports what it
had gathered so far.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class BudgetExhausted(Exception):
    """The audit has used every request it was allowed."""


@dataclass
class Spend:
    requests: int = 0
    tokens: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, usage: dict[str, Any] | None) -> None:
        self.requests += 1
        if not isinstance(usage, dict):
            return
        prompt = _count(usage.get("prompt_tokens"))
        completion = _count(usage.get("completion_tokens"))
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        self.tokens += prompt + completion

    def to_dict(self) -> dict[str, int]:
        return {"requests": self.requests, "tokens": self.tokens,
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}


def _count(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else 0


Listener = Callable[[str, str], None]
"""Called as listener(check, side) after every request; side is "suspect" or "reference"."""


@dataclass
class Ledger:
    """Spend per check and side, and the cap on requests to the audited endpoint."""

    cap: int | None = None
    checks: dict[str, dict[str, Spend]] = field(default_factory=dict)
    listeners: list[Listener] = field(default_factory=list)
    _reserved: int = 0

    def spend(self, check: str, side: str) -> Spend:
        return self.checks.setdefault(check, {}).setdefault(side, Spend())

    def reserve(self, side: str) -> None:
        """Claim one request before sending it (raises when the cap is reached)."""
        if side != "suspect":
            return
        if self.cap is not None and self._reserved >= self.cap:
            raise BudgetExhausted(f"the audit's budget of {self.cap} requests is spent")
        self._reserved += 1

    def record(self, check: str, side: str, usage: dict[str, Any] | None) -> None:
        self.spend(check, side).add(usage)
        for listener in self.listeners:
            listener(check, side)

    def left(self) -> int | None:
        return None if self.cap is None else max(0, self.cap - self._reserved)

    def total(self, side: str) -> Spend:
        out = Spend()
        for sides in self.checks.values():
            s = sides.get(side)
            if s is not None:
                out.requests += s.requests
                out.tokens += s.tokens
                out.prompt_tokens += s.prompt_tokens
                out.completion_tokens += s.completion_tokens
        return out
