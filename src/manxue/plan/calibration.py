"""Calibration: published serving measurements next to the roofline estimate for each."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from manxue.errors import ConfigError
from manxue.plan.capacity import Deployment, plan_capacity
from manxue.plan.catalog import Catalog, builtin_catalog, hardware_from_table
from manxue.plan.specs import HardwareSpec

PHASES = ("decode", "decode_per_sequence", "prefill")
LOCAL_FILE = "plan-calibration.toml"


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
    kind: str = "gpu"      # the hardware's kind (gpu, cpu, soc, npu)

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


def _anchors(tables: list[dict[str, Any]], origin: str) -> tuple[Anchor, ...]:
    try:
        found = tuple(Anchor(**t) for t in tables)
    except TypeError as exc:
        raise ConfigError(f"{origin}: bad [[anchor]] table: {exc}") from None
    bad = [a.id for a in found if a.phase not in PHASES]
    if bad:
        raise ConfigError(f"{origin}: unknown phase in {bad}; use one of {', '.join(PHASES)}")
    return found


@lru_cache(maxsize=1)
def anchors() -> tuple[Anchor, ...]:
    """The shipped table of published measurements."""
    text = (resources.files("manxue.plan") / "data" / "calibration.toml").read_text(encoding="utf-8")
    return _anchors(tomllib.loads(text)["anchor"], "calibration.toml")


def local_rows(path: Path) -> tuple[list[HardwareSpec], tuple[Anchor, ...]]:
    """Measurements of this machine (`manxue plan measure --save`): its hardware and rows."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read calibration file {path}: {exc}") from None
    hardware = [hardware_from_table(t, f"{path} hardware[{i}]")
                for i, t in enumerate(doc.get("hardware", []))]
    return hardware, _anchors(doc.get("anchor", []), str(path))


def default_local_file() -> Path | None:
    """Where `plan measure --save` keeps this machine's rows ($MANXUE_PLAN_CALIBRATION, else
    plan-calibration.toml in the data directory); None when there is none."""
    from manxue.settings import default_data_dir

    path = Path(os.environ.get("MANXUE_PLAN_CALIBRATION") or default_data_dir() / LOCAL_FILE)
    return path if path.is_file() else None


def estimate(a: Anchor, catalog: Catalog) -> float:
    cap = plan_capacity(Deployment(catalog.model(a.model), catalog.device(a.hardware), a.gpus,
                                   a.precision or None, a.context, engine=a.engine,
                                   kv_bytes_per_token=a.kv_bytes_per_token), a.batch)
    if a.phase == "prefill":
        value = cap.prefill_tokens_per_s / (1 - a.cache_hit_share)
    elif a.phase == "decode_per_sequence":
        value = cap.decode.per_sequence_tokens_per_s if cap.decode else 0.0
    else:
        value = cap.decode_tokens_per_s
    return value / a.per_nodes / a.per_gpus


def calibration(catalog: Catalog | None = None, local: Path | None = None) -> list[CalibrationRow]:
    """Every row next to its roofline estimate: the shipped table, plus a local file's rows."""
    cat = catalog or builtin_catalog()
    rows = anchors()
    if local is not None:
        hardware, mine = local_rows(local)
        cat = cat.merged([], hardware)
        rows = rows + mine
    return [CalibrationRow(a, estimate(a, cat), cat.device(a.hardware).kind) for a in rows]
