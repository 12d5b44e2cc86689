"""Calibrated capacity: the roofline derated by what engines reach in the same regime.

`plan_calibrated` is what every planner answer uses by default: the roofline capacity, each
throughput times the efficiency learned for its regime (efficiency.py), with a low–high range.
An explicit efficiency (`--efficiency 1.0` is the bound itself) replaces the calibration.
The decode batch, unless given, is the largest that keeps every sequence at or above a
per-user speed (10 tok/s by default) and fits in memory — not simply the most that fit.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from manxue.errors import InvalidParameters
from manxue.plan.capacity import Capacity, Deployment, plan_capacity
from manxue.plan.efficiency import (
    ENGINE_FAMILIES,
    Efficiency,
    EfficiencyModel,
    builtin_model,
    regime,
)
from manxue.plan.specs import HardwareSpec
from manxue.plan.throughput import Step, decode_step

DEFAULT_ENGINES = {"gpu": "vllm", "cpu": "llama.cpp", "soc": "llama.cpp", "npu": "rkllm"}
DEFAULT_USER_SPEED = 10.0   # tokens/s per sequence the default batch keeps


def default_engine(hw: HardwareSpec) -> str:
    return DEFAULT_ENGINES.get(hw.kind, "vllm")


@dataclass(frozen=True, slots=True)
class Calibrated:
    """A capacity whose throughputs are expected values; `bound` is the roofline itself."""

    capacity: Capacity
    bound: Capacity
    engine: str
    decode: Efficiency | None      # None: a fixed efficiency was given (or nothing fits)
    single: Efficiency | None
    prefill: Efficiency | None
    user_speed_target: float
    batch_meets_target: bool

    @property
    def basis(self) -> str:
        if self.decode is None:
            eff = self.capacity.deployment.efficiency
            return "roofline bound" if eff == 1.0 else f"roofline × {eff:g} (given)"
        return "calibrated on published measurements"

    def ranges(self) -> dict[str, Any]:
        """Throughputs with low/high (low = high = value when a fixed efficiency was given)."""
        cap = self.capacity
        per_seq = cap.decode.per_sequence_tokens_per_s if cap.decode else 0.0
        return {
            "basis": self.basis, "engine": self.engine,
            "decode_tokens_per_s": _range(cap.decode_tokens_per_s, self.decode),
            "decode_tokens_per_s_per_sequence": _range(per_seq, self.decode),
            "single_sequence_tokens_per_s": _range(cap.single.per_sequence_tokens_per_s,
                                                   self.single),
            "prefill_tokens_per_s": _range(cap.prefill_tokens_per_s, self.prefill),
            "bound": {"decode_tokens_per_s": self.bound.decode_tokens_per_s,
                      "single_sequence_tokens_per_s": self.bound.single.per_sequence_tokens_per_s,
                      "prefill_tokens_per_s": self.bound.prefill_tokens_per_s},
            "per_user_speed_target": self.user_speed_target,
            "batch_meets_target": self.batch_meets_target,
        }

    def scaled(self, which: str) -> Capacity:
        """The capacity at the low or high end of every range."""
        if self.decode is None or self.single is None or self.prefill is None:
            return self.capacity
        ends = [(e.low if which == "low" else e.high) for e in (self.decode, self.single,
                                                                 self.prefill)]
        return _derate(self.bound, *ends)


def _range(value: float, eff: Efficiency | None) -> dict[str, Any]:
    if eff is None:
        return {"value": value, "low": value, "high": value}
    return {"value": value, "low": value * eff.low / eff.value,
            "high": value * eff.high / eff.value, **eff.as_dict()}


def _step(s: Step, eff: float) -> Step:
    return replace(s, seconds=s.seconds / eff)


def _derate(cap: Capacity, decode: float, single: float, prefill: float) -> Capacity:
    return replace(cap, decode=_step(cap.decode, decode) if cap.decode else None,
                   single=_step(cap.single, single),
                   prefill_tokens_per_s=cap.prefill_tokens_per_s * prefill,
                   hit_tokens_per_s=cap.hit_tokens_per_s * decode)


class _Speeds:
    """Per-sequence decode speed at a batch, with the efficiency of that batch's regime."""

    def __init__(self, bound: Capacity, engine: str, model: EfficiencyModel | None) -> None:
        self.bound, self.engine, self.model = bound, engine, model

    def efficiency(self, phase: str, batch: int | None) -> Efficiency | None:
        d = self.bound.deployment
        if self.model is None:
            return None
        return self.model.efficiency(regime(phase, batch, self.engine, d.hw.kind, d.gpus))

    def per_sequence(self, batch: int) -> float:
        eff = self.efficiency("decode", batch)
        factor = eff.value if eff else 1.0  # a given efficiency is already in the roofline
        step = decode_step(self.bound.roofline, batch, self.bound.deployment.context)
        return step.per_sequence_tokens_per_s * factor


def _batch_for_speed(speeds: _Speeds, most: int, target: float) -> tuple[int, bool]:
    """The largest batch ≤ most whose sequences each decode at ≥ target tok/s."""
    if target <= 0:
        return most, True
    ok = [b for b in (1, 2) if b <= most and speeds.per_sequence(b) >= target]
    lo, hi = 3, most
    if hi >= lo and speeds.per_sequence(lo) >= target:   # batched: speed falls with the batch
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if speeds.per_sequence(mid) >= target else (lo, mid - 1)
        ok.append(lo)
    return (max(ok), True) if ok else (1, False)


def plan_calibrated(d: Deployment, batch: int | None = None, *, calibrated: bool = True,
                    engine: str | None = None, user_speed: float = DEFAULT_USER_SPEED,
                    model: EfficiencyModel | None = None) -> Calibrated:
    """The deployment's capacity, calibrated unless `calibrated` is False (d.efficiency used)."""
    engine = (engine or d.engine or default_engine(d.hw)).lower()
    if engine not in ENGINE_FAMILIES:
        raise InvalidParameters(f"unknown engine {engine!r}; known: {', '.join(ENGINE_FAMILIES)}",
                                param="engine")
    d = replace(d, engine=engine, efficiency=1.0 if calibrated else d.efficiency)
    fits = plan_capacity(d, None)
    most = fits.memory.max_concurrent_sequences
    learned = (model or builtin_model()) if calibrated else None
    speeds = _Speeds(fits, engine, learned)
    meets = True
    if batch is None and most >= 1:
        batch, meets = _batch_for_speed(speeds, most, user_speed)
    bound = plan_capacity(d, batch) if batch is not None else fits
    dec = speeds.efficiency("decode", bound.decode.batch if bound.decode else 1)
    one = speeds.efficiency("decode", 1)
    pre = speeds.efficiency("prefill", None)
    if dec is None or one is None or pre is None:
        return Calibrated(bound, bound, engine, None, None, None, user_speed, meets)
    return Calibrated(_derate(bound, dec.value, one.value, pre.value), bound, engine, dec, one,
                      pre, user_speed, meets)
