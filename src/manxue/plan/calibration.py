"""Calibration: published serving measurements next to the roofline estimate for each."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from manxue.plan.capacity import Deployment, plan_capacity
from manxue.plan.catalog import Catalog, builtin_catalog

PHASES = ("decode", "decode_per_sequence", "prefill")


@dataclass(frozen=True, slots=True)
class Anchor:
    id: str
    engine: str
    label: str
    model: str
    hardware: str
    gpus: int
    precision: str
    context: int
    phase: str
    published: float
    source: str
    assumed: str = ""
    batch: int | None = None
    per_nodes: int = 1
    per_gpus: int = 1
    cache_hit_share: float = 0.0
    kv_bytes_per_token: int | None = None   # the engine's own cache layout, where it differs


@dataclass(frozen=True, slots=True)
class CalibrationRow:
    anchor: Anchor
    estimate: float

    @property
    def ratio(self) -> float:
        """Estimate / published: > 1 means the roofline bound holds."""
        return self.estimate / self.anchor.published

    def as_dict(self) -> dict[str, Any]:
        a = self.anchor
        return {"id": a.id, "label": a.label, "phase": a.phase, "published": a.published,
                "estimate": round(self.estimate, 2), "ratio": round(self.ratio, 2),
                "model": a.model, "hardware": a.hardware, "gpus": a.gpus,
                "precision": a.precision, "context": a.context, "batch": a.batch,
                "assumed": a.assumed, "source": a.source}


@lru_cache(maxsize=1)
def anchors() -> tuple[Anchor, ...]:
    text = (resources.files("manxue.plan") / "data" / "calibration.toml").read_text(encoding="utf-8")
    found = tuple(Anchor(**t) for t in tomllib.loads(text)["anchor"])
    bad = [a.id for a in found if a.phase not in PHASES]
    if bad:
        raise ValueError(f"calibration.toml: unknown phase in {bad}")
    return found


def estimate(a: Anchor, catalog: Catalog) -> float:
    cap = plan_capacity(Deployment(catalog.model(a.model), catalog.device(a.hardware), a.gpus,
                                   a.precision, a.context, engine=a.engine,
                                   kv_bytes_per_token=a.kv_bytes_per_token), a.batch)
    if a.phase == "prefill":
        value = cap.prefill_tokens_per_s / (1 - a.cache_hit_share)
    elif a.phase == "decode_per_sequence":
        value = cap.decode.per_sequence_tokens_per_s if cap.decode else 0.0
    else:
        value = cap.decode_tokens_per_s
    return value / a.per_nodes / a.per_gpus


def calibration(catalog: Catalog | None = None) -> list[CalibrationRow]:
    cat = catalog or builtin_catalog()
    return [CalibrationRow(a, estimate(a, cat)) for a in anchors()]
