"""The models a claim can name (data/candidates.toml): tokenizer family, API traits, priors."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

LEVELS = (1, 2, 3)


@dataclass(frozen=True)
class LevelPrior:
    """Beta(a, b) over a model's pass rate at one probe level."""

    a: float
    b: float

    @property
    def mean(self) -> float:
        return self.a / (self.a + self.b)


@dataclass(frozen=True)
class Candidate:
    id: str
    name: str
    group: str
    tokenizer: str
    aliases: tuple[str, ...] = ()
    overhead: tuple[int, int] | str | None = None
    reasoning: bool = False
    usage_cache_fields: bool = False
    context: int | None = None
    probe_max_tokens: int = 256
    probe_temperature: float = 0.0
    priors: tuple[LevelPrior, ...] = ()
    calibration: str = "none"

    @property
    def has_priors(self) -> bool:
        return len(self.priors) == len(LEVELS)

    @property
    def calibrated(self) -> bool:
        """Priors measured on these probes: the capability test's p-value is then valid."""
        return self.has_priors and self.calibration == "measured"

    def matches(self, name: str) -> bool:
        n = name.strip().lower()
        return n == self.id.lower() or n in (a.lower() for a in self.aliases)


def _priors(row: dict[str, Any]) -> tuple[LevelPrior, ...]:
    if "pass_rates" in row:
        k = float(row.get("prior_strength", 10))
        return tuple(LevelPrior(max(1e-3, r * k), max(1e-3, (1 - r) * k))
                     for r in row["pass_rates"])
    passes, trials = row.get("passes"), row.get("trials")
    if passes and trials and sum(trials) > 0:
        return tuple(LevelPrior(p + 1.0, t - p + 1.0) for p, t in zip(passes, trials, strict=True))
    return ()


def _candidate(row: dict[str, Any]) -> Candidate:
    overhead = row.get("overhead")
    if isinstance(overhead, list):
        overhead = (int(overhead[0]), int(overhead[1]))
    return Candidate(
        id=row["id"], name=row.get("name", row["id"]), group=row.get("group", "other"),
        tokenizer=row["tokenizer"], aliases=tuple(row.get("aliases", ())), overhead=overhead,
        reasoning=bool(row.get("reasoning", False)),
        usage_cache_fields=bool(row.get("usage_cache_fields", False)),
        context=row.get("context"), probe_max_tokens=int(row.get("probe_max_tokens", 256)),
        probe_temperature=float(row.get("probe_temperature", 0.0)), priors=_priors(row),
        calibration=row.get("calibration", "none"))


@cache
def catalog() -> tuple[Candidate, ...]:
    text = resources.files("manxue.verify").joinpath("data/candidates.toml").read_text("utf-8")
    return tuple(_candidate(row) for row in tomllib.loads(text)["model"])


def find(name: str | None) -> Candidate | None:
    """The catalog entry a claim or a model name stands for, if any."""
    if not name:
        return None
    return next((c for c in catalog() if c.matches(name)), None)


def rivals(claim: Candidate | None) -> list[Candidate]:
    """Candidates for the posterior: the claim's group (all models when the claim is unknown)."""
    group = [c for c in catalog() if claim is None or c.group == claim.group]
    return [c for c in group if c.has_priors]
