"""DeepSeek's day from first principles: nodes, cost and margin without its published throughput.

    prefill nodes = cache-miss input tokens/s ÷ calibrated prefill tokens/s per node
                    (R1 on H800, FP8, 32-GPU expert-parallel units of 4 nodes, 4K prompts)
    decode nodes  = output tokens/s ÷ calibrated decode tokens/s per node
                    (144-GPU units of 18 nodes, 4K of KV per sequence, the largest batch that
                    keeps every user at the published 20 tok/s)
    cost          = nodes × 8 GPUs × 24 h × $2;  revenue = the day's tokens at R1 list prices

The efficiencies are learned from the calibration table with DeepSeek's own rows left out,
so the published per-node throughputs (73.7k prefill, 14.8k decode) are never used; they
appear only in the comparison, line by line. Cache hits are taken to cost no compute, as in
the prefill anchor.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from manxue.plan.calibrated import plan_calibrated
from manxue.plan.calibration import calibration
from manxue.plan.capacity import Deployment
from manxue.plan.catalog import builtin_catalog
from manxue.plan.day import deepseek_day, published_day
from manxue.plan.efficiency import EfficiencyModel

PREFILL_GPUS, DECODE_GPUS = 32, 144        # the published unit sizes (EP32, EP144)
CONTEXT = 4096
USER_SPEED = 20.0                          # published: 20–22 tok/s per user
TOLERANCE = 0.25


@dataclass(frozen=True, slots=True)
class Derived:
    prefill_per_node: float
    decode_per_node: float
    decode_batch: int
    prefill_nodes: float
    decode_nodes: float


def _model_without_deepseek() -> EfficiencyModel:
    rows = [r for r in calibration() if r.anchor.engine != "deepseek"]
    return EfficiencyModel(rows)


def derive(model: EfficiencyModel | None = None) -> tuple[Derived, dict[str, Any]]:
    day = published_day()
    cat = builtin_catalog()
    r1, hw = cat.model("deepseek-r1"), cat.device(day.hardware)
    learned = model or _model_without_deepseek()
    pre = plan_calibrated(Deployment(r1, hw, PREFILL_GPUS, "fp8", CONTEXT), engine="deepseek",
                          model=learned)
    dec = plan_calibrated(Deployment(r1, hw, DECODE_GPUS, "fp8", CONTEXT), engine="deepseek",
                          user_speed=USER_SPEED, model=learned)
    per_node = hw.per_node
    prefill_rate = pre.capacity.prefill_tokens_per_s / (PREFILL_GPUS / per_node)
    decode_rate = dec.capacity.decode_tokens_per_s / (DECODE_GPUS / per_node)
    day_json = deepseek_day()
    seconds = float(day.hours) * 3600
    misses = day_json["tokens"]["cache_miss"]
    d = Derived(prefill_rate, decode_rate, dec.capacity.decode.batch if dec.capacity.decode else 0,
                misses / seconds / prefill_rate, day.output_tokens / seconds / decode_rate)
    return d, {"prefill": pre, "decode": dec, "day": day_json}


def _pct(x: float, ref: float) -> float:
    return round((x - ref) / ref * 100, 1)


def derived_day() -> dict[str, Any]:
    """The derivation next to the published day, each line with its gap."""
    day = published_day()
    d, parts = derive()
    pub = parts["day"]
    seconds = float(day.hours) * 3600
    nodes = d.prefill_nodes + d.decode_nodes
    cost = Decimal(repr(round(nodes, 4))) * day.gpus_per_node * day.hours * day.gpu_hour_usd
    revenue = Decimal(pub["revenue_usd"])
    margin = (revenue - cost) / cost
    # what the published figures imply, for the line-by-line comparison only
    pub_prefill_rate, pub_decode_rate = 73_700.0, 14_800.0
    implied_prefill_nodes = day.input_tokens / seconds / pub_prefill_rate
    implied_decode_nodes = day.output_tokens / seconds / pub_decode_rate
    pre_eff = parts["prefill"].prefill
    dec_eff = parts["decode"].decode

    def eff(e: Any) -> dict[str, Any]:
        return e.as_dict() if e is not None else {}

    lines: list[dict[str, Any]] = [
        {"line": "prefill tokens/s per node (cache misses)", "derived": round(d.prefill_per_node),
         "published": round(pub_prefill_rate * (1 - day.cache_hit_tokens / day.input_tokens)),
         "note": "published 73.7k counts cache hits; × miss share for the same unit"},
        {"line": "decode tokens/s per node", "derived": round(d.decode_per_node),
         "published": pub_decode_rate,
         "note": f"at batch {d.decode_batch} per 144-GPU unit, {USER_SPEED:g} tok/s per user"},
        {"line": "prefill nodes", "derived": round(d.prefill_nodes, 2),
         "published": round(implied_prefill_nodes, 2),
         "note": "published: 608B input ÷ 86,400 s ÷ 73.7k per node"},
        {"line": "decode nodes", "derived": round(d.decode_nodes, 2),
         "published": round(implied_decode_nodes, 2),
         "note": "published: 168B output ÷ 86,400 s ÷ 14.8k per node"},
        {"line": "nodes", "derived": round(nodes, 2), "published": float(day.nodes_average),
         "note": "the published average; its peak was 278"},
        {"line": "cost (USD/day)", "derived": round(float(cost)), "published":
            float(day.published_cost_usd), "note": "nodes × 8 GPUs × 24 h × $2"},
        {"line": "cost-profit margin (%)", "derived": round(float(margin) * 100, 1),
         "published": float(day.published_cost_profit_margin_percent),
         "note": "revenue $562,027 (the day's tokens at R1 list prices) over the cost"},
    ]
    for line in lines:
        line["gap_percent"] = _pct(float(line["derived"]), float(line["published"]))
    checks = {k: abs(_pct(v, ref)) <= TOLERANCE * 100 for k, v, ref in (
        ("nodes", nodes, float(day.nodes_average)),
        ("cost", float(cost), float(day.published_cost_usd)),
        ("margin", float(margin) * 100, float(day.published_cost_profit_margin_percent)))}
    return {
        "method": __doc__.split("\n\n")[1] if __doc__ else "",
        "efficiency": {"prefill": eff(pre_eff), "decode": eff(dec_eff),
                       "left_out": sorted(a.anchor.id for a in calibration()
                                          if a.anchor.engine == "deepseek")},
        "nodes": round(nodes, 2), "cost_usd": round(float(cost), 2),
        "revenue_usd": float(revenue), "cost_profit_margin": round(float(margin), 4),
        "cost_profit_margin_percent": round(float(margin) * 100),
        "lines": lines,
        "within_25_percent": checks,
    }



