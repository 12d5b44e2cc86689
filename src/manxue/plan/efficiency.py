"""Calibrated efficiency: the share of the roofline a real engine reaches, learned by regime.

Every published measurement in the calibration table is an efficiency (published / roofline
estimate). A plan is a regime — phase (prefill or decode), batch (one sequence or many),
engine family, hardware kind, and whether the work is spread over several devices — and its
efficiency is the geometric mean of the measurements of the most specific regime that has
any, backing off one feature at a time (the order below). The low–high range is that mean
times / divided by the spread: the larger of the group's own scatter and the table's
leave-one-out error, so a regime known from one row is not presented as exact.

`leave_one_out` predicts every row from the others with the same rule: the honest error of
the planner on published figures (docs/plan.md prints it; a test pins it).
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from manxue.errors import ConfigError, ManxueError
from manxue.plan.calibration import Anchor, CalibrationRow, calibration, default_local_file

# engine → family: engines whose kernels and schedulers behave alike share what they learn
ENGINE_FAMILIES = {
    "deepseek": "gpu-serving", "sglang": "gpu-serving", "vllm": "gpu-serving",
    "chitu": "gpu-serving", "tensorrt-llm": "gpu-serving", "lmdeploy": "gpu-serving",
    "llama.cpp": "llama.cpp", "manxue": "llama.cpp", "ollama": "llama.cpp",
    "ktransformers": "cpu-gpu-hybrid", "rkllm": "npu-runtime",
}
FEATURES = ("phase", "batch", "engine", "kind", "spread")
# most specific first; each later level forgets what matters least for the roof's shape
LEVELS: tuple[tuple[str, ...], ...] = (
    ("phase", "batch", "engine", "kind", "spread"),
    ("phase", "batch", "kind", "spread"),
    ("phase", "batch", "engine", "kind"),
    ("phase", "batch", "engine", "spread"),
    ("phase", "batch", "spread"),
    ("phase", "batch"),
    ("phase",),
)
MIN_SPREAD = 1.25
log = logging.getLogger("manxue.plan")   # the narrowest range quoted, as a factor either way


@dataclass(frozen=True, slots=True)
class Regime:
    phase: str      # "prefill" | "decode"
    batch: str      # "single" | "batched"
    engine: str     # an engine family (ENGINE_FAMILIES values)
    kind: str       # "gpu" | "cpu" | "soc" | "npu"
    spread: str     # "one" device | "many"

    def key(self, level: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(getattr(self, f) for f in level)

    def as_dict(self) -> dict[str, str]:
        return {f: getattr(self, f) for f in FEATURES}


def engine_family(engine: str) -> str:
    return ENGINE_FAMILIES.get(engine.lower(), engine.lower())


def regime(phase: str, batch: int | None, engine: str, kind: str, devices: int) -> Regime:
    single = batch is not None and batch <= 2
    return Regime("prefill" if phase == "prefill" else "decode",
                  "single" if single and phase != "prefill" else "batched",
                  engine_family(engine), kind, "one" if devices <= 1 else "many")


def anchor_regime(a: Anchor, kind: str) -> Regime:
    return regime(a.phase, a.batch, a.engine, kind, a.gpus)


@dataclass(frozen=True, slots=True)
class Efficiency:
    value: float            # share of the roofline (0 < value ≤ 1)
    low: float
    high: float
    basis: tuple[str, ...]  # the calibration rows it was learned from
    level: tuple[str, ...]  # the regime features those rows share with the plan

    def as_dict(self) -> dict[str, Any]:
        return {"efficiency": round(self.value, 4), "efficiency_low": round(self.low, 4),
                "efficiency_high": round(self.high, 4), "learned_from": list(self.basis),
                "matched_on": list(self.level)}


@dataclass(frozen=True, slots=True)
class _Point:
    id: str
    regime: Regime
    log_eff: float


class EfficiencyModel:
    """Efficiencies by regime from calibration rows (published / estimate)."""

    def __init__(self, rows: Iterable[CalibrationRow]) -> None:
        self.points = tuple(_Point(r.anchor.id, anchor_regime(r.anchor, r.kind),
                                   -math.log(r.ratio)) for r in rows if r.estimate > 0)
        self._floor = MIN_SPREAD

    def group(self, r: Regime, exclude: Sequence[str] = ()) -> tuple[tuple[str, ...], list[_Point]]:
        for level in LEVELS:
            found = [p for p in self.points
                     if p.id not in exclude and p.regime.key(level) == r.key(level)]
            if found:
                return level, found
        return (), [p for p in self.points if p.id not in exclude]

    def efficiency(self, r: Regime, exclude: Sequence[str] = ()) -> Efficiency:
        level, found = self.group(r, exclude)
        logs = [p.log_eff for p in found]
        centre = statistics.fmean(logs)
        scatter = max((abs(x - centre) for x in logs), default=0.0)
        half = max(scatter, math.log(self._floor))
        value = min(math.exp(centre), 1.0)
        return Efficiency(value, math.exp(centre - half), min(math.exp(centre + half), 1.0),
                          tuple(p.id for p in found), level)

    def with_floor(self, factor: float) -> EfficiencyModel:
        out = EfficiencyModel.__new__(EfficiencyModel)
        out.points, out._floor = self.points, max(factor, MIN_SPREAD)
        return out


@dataclass(frozen=True, slots=True)
class LooRow:
    id: str
    label: str
    published: float
    roofline: float
    predicted: float
    efficiency: float
    matched_on: tuple[str, ...]
    learned_from: tuple[str, ...]

    @property
    def error(self) -> float:
        """|predicted − published| / published."""
        return abs(self.predicted - self.published) / self.published

    @property
    def factor(self) -> float:
        """How far off, as a factor ≥ 1 either way."""
        return max(self.predicted / self.published, self.published / self.predicted)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "label": self.label, "published": self.published,
                "roofline": round(self.roofline, 2), "predicted": round(self.predicted, 2),
                "efficiency": round(self.efficiency, 4), "error": round(self.error, 4),
                "factor": round(self.factor, 3), "matched_on": list(self.matched_on),
                "learned_from": list(self.learned_from)}


def leave_one_out(rows: Sequence[CalibrationRow]) -> list[LooRow]:
    """Each row predicted by the model learned from all the others."""
    model = EfficiencyModel(rows)
    out = []
    for row in rows:
        a = row.anchor
        eff = model.efficiency(anchor_regime(a, row.kind), exclude=(a.id,))
        out.append(LooRow(a.id, a.label, a.published, row.estimate, row.estimate * eff.value,
                          eff.value, eff.level, eff.basis))
    return out


def loo_summary(loo: Sequence[LooRow]) -> dict[str, float]:
    return {"rows": len(loo), "median_error": statistics.median(r.error for r in loo),
            "worst_factor": max(r.factor for r in loo),
            "median_factor": statistics.median(r.factor for r in loo)}


@lru_cache(maxsize=4)
def _model_for(local: Path | None, stamp: float) -> EfficiencyModel:
    shipped = calibration()
    rows = calibration(local=local) if local is not None else shipped
    summary = loo_summary(leave_one_out(shipped))
    return EfficiencyModel(rows).with_floor(summary["median_factor"])


def builtin_model() -> EfficiencyModel:
    """The shipped table plus this machine's measured rows, if any (`plan measure --save`);
    the range floor is the shipped table's median leave-one-out factor. A local file that
    cannot be read or planned is left out with a warning: plans go on from the shipped table."""
    local = default_local_file()
    if local is None:
        return _model_for(None, 0.0)
    try:
        return _model_for(local, local.stat().st_mtime)
    except (ConfigError, ManxueError, OSError) as exc:
        log.warning("plan: ignoring the measured calibration rows in %s: %s", local,
                    getattr(exc, "message", None) or exc)
        return _model_for(None, 0.0)
