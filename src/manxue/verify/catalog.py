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

    @property
    def variance(self) -> float:
        n = self.a + self.b
        return self.a * self.b / (n * n * (n + 1))


FLAT = (LevelPrior(1.0, 1.0),) * len(LEVELS)
"""Any pass rate equally likely: the prior of a model the catalog does not list."""
UNLISTED = "unlisted"
"""The group of the stand-ins for models the catalog does not list (see `unlisted`)."""
SEPARATION = 2.0
"""Pass-rate priors closer than this many standard deviations at every level are within
calibration noise of each other: the probes cannot tell those models apart."""


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


def with_tokenizer(families: list[str], exclude: list[Candidate]) -> list[Candidate]:
    """The models that use one of `families`, for a posterior whose group has none: the
    catalog's (outside `exclude`), and for a family no catalog model uses, an `unlisted`
    stand-in, so that the probability goes where the tokenizer points."""
    taken = {c.id for c in exclude}
    listed = [c for c in catalog() if c.tokenizer in families and c.has_priors and c.id not in taken]
    covered = {c.tokenizer for c in listed}
    return listed + [unlisted(f) for f in families if f not in covered]


def unlisted(family: str) -> Candidate:
    """A model the catalog does not list that uses the `family` tokenizer (flat priors, no
    known API traits)."""
    return Candidate(id=f"unlisted ({family} tokenizer)",
                     name=f"a model not in the catalog that uses the {family} tokenizer",
                     group=UNLISTED, tokenizer=family, priors=FLAT)


def indistinguishable(a: Candidate, b: Candidate, z: float = SEPARATION) -> bool:
    """Whether the probes cannot tell `a` from `b`: at every level their pass-rate priors'
    means differ by at most `z` standard deviations of the difference (both priors' spread:
    the calibration's own noise). E.g. SmolLM2 and its Q2_K copy (measured 21/1/2 and 18/1/4
    passes of 60) are; SmolLM2 and Gemma-3-270M (5/0/1) are not."""
    if not (a.has_priors and b.has_priors):
        return False
    return all(abs(pa.mean - pb.mean) <= z * (pa.variance + pb.variance) ** 0.5
               for pa, pb in zip(a.priors, b.priors, strict=True))
