"""What one audit is asked to do (the CLI's options, the POST /v1/verify body).

`guard` is the network policy for the targets the caller named (the HTTP API sets it; the
CLI leaves it None and may audit anything); `own_targets` names the sides ("suspect",
"reference") that the gateway pointed at itself, which the policy does not apply to."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from manxue.errors import InvalidParameters
from manxue.verify.checks import CHECKS, DEFAULT, WITH_WEIGHTS
from manxue.verify.checks.base import CheckOptions
from manxue.verify.netguard import Policy
from manxue.verify.scorer import Scorer

DEFAULT_BUDGET = 40


@dataclass
class AuditConfig:
    base_url: str
    model: str
    api_key: str | None = None
    claim: str | None = None
    """A catalog id or alias (data/candidates.toml); default: the model name."""
    reference_url: str | None = None
    reference_model: str | None = None
    reference_api_key: str | None = None
    budget_requests: int | None = DEFAULT_BUDGET
    seed: int = field(default_factory=lambda: secrets.randbelow(2**31))
    checks: tuple[str, ...] = DEFAULT
    options: CheckOptions = field(default_factory=CheckOptions)
    timeout: float = 300.0
    guard: Policy | None = field(default=None, repr=False, compare=False)
    own_targets: frozenset[str] = field(default=frozenset(), repr=False, compare=False)
    scorer: Scorer | None = field(default=None, repr=False, compare=False)
    """The reference's weights (a local GGUF), for the likelihood check."""

    def __post_init__(self) -> None:
        if self.scorer is not None and self.checks == DEFAULT:
            self.checks = WITH_WEIGHTS
        if not self.base_url.startswith(("http://", "https://")):
            raise InvalidParameters("base_url must start with http:// or https://", param="base_url")
        if not self.model:
            raise InvalidParameters("model is required", param="model")
        unknown = [c for c in self.checks if c not in CHECKS]
        if unknown:
            raise InvalidParameters(f"unknown check(s) {', '.join(unknown)}; known: "
                                    f"{', '.join(CHECKS)}", param="checks")
        if self.budget_requests is not None and self.budget_requests < 1:
            raise InvalidParameters("budget_requests must be at least 1", param="budget_requests")
        if self.reference_url and not self.reference_url.startswith(("http://", "https://")):
            raise InvalidParameters("reference_url must start with http:// or https://",
                                    param="reference_url")
        if not 0 < self.options.alpha < 1:
            raise InvalidParameters("alpha must be between 0 and 1", param="alpha")

    @property
    def has_reference(self) -> bool:
        return bool(self.reference_url or self.reference_model)

    def guard_for(self, side: str) -> Policy | None:
        """The policy for the suspect's or the reference's connections (None: unchecked)."""
        return None if side in self.own_targets else self.guard

    def guarded_targets(self) -> list[tuple[str, str]]:
        """(param, URL) of every target the policy applies to, for a check before the start."""
        if self.guard is None:
            return []
        out = [] if "suspect" in self.own_targets else [("base_url", self.base_url)]
        if self.has_reference and "reference" not in self.own_targets:
            out.append(("reference_url", self.reference_url or self.base_url))
        return out

    def public(self) -> dict[str, Any]:
        """The settings as shown in results and reports (never the API keys)."""
        return {"base_url": self.base_url, "model": self.model, "claim": self.claim,
                "reference_url": self.reference_url or (self.base_url if self.has_reference else None),
                "reference_model": (self.reference_model or self.model) if self.has_reference else None,
                "budget_requests": self.budget_requests, "seed": self.seed,
                "checks": list(self.checks), "alpha": self.options.alpha,
                "reference_weights": self.scorer.name if self.scorer is not None else None}


def parse_checks(values: list[str] | None) -> tuple[str, ...]:
    """`["tokenizer,protocol", "context"]` → ("tokenizer", "protocol", "context"); "all" = every
    check, "default" = the default set."""
    if not values:
        return DEFAULT
    out: list[str] = []
    for v in values:
        for name in (s.strip() for s in v.split(",")):
            if name == "all":
                out.extend(CHECKS)
            elif name == "default":
                out.extend(DEFAULT)
            elif name:
                out.append(name)
    order = list(CHECKS)
    return tuple(sorted(dict.fromkeys(out), key=lambda n: order.index(n) if n in order else 99))
