"""The plan report: one function behind `manxue plan --json` and `GET /v1/plan`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from manxue.errors import InvalidParameters
from manxue.plan.calibrated import DEFAULT_USER_SPEED, Calibrated, plan_calibrated
from manxue.plan.capacity import Capacity, Deployment
from manxue.plan.catalog import Catalog
from manxue.plan.economics import blended_output_capacity, cost_prices, usd_per_million
from manxue.plan.specs import ModelSpec
from manxue.pricing import PriceList, get_price_list, price_at
from manxue.pricing.units import round_money

# DeepSeek's published day: 608B input (342B cache hits) per 168B output.
DEFAULT_INPUT_PER_OUTPUT = 608 / 168
DEFAULT_HIT_RATE = 342 / 608


@dataclass(frozen=True, slots=True)
class PlanQuery:
    model: str
    hardware: str
    gpus: int
    precision: str | None = None
    context: int = 8192
    gpu_hour: Decimal = Decimal("2.0")
    price_list: str | None = None
    efficiency: float | None = None     # None: calibrated; 1.0: the roofline bound
    utilisation: float = 1.0
    overhead: float = 0.10
    kv_dtype: str = "bf16"
    kv_bytes_per_token: int | None = None
    batch: int | None = None
    input_per_output: float = DEFAULT_INPUT_PER_OUTPUT
    hit_rate: float = DEFAULT_HIT_RATE
    at: datetime | None = None
    engine: str | None = None           # None: by hardware kind (vLLM on GPUs, llama.cpp on CPUs)
    user_speed: float = DEFAULT_USER_SPEED


def deployment_for(q: PlanQuery, catalog: Catalog, allow_paths: bool = True) -> Deployment:
    efficiency = 1.0 if q.efficiency is None else q.efficiency  # None: calibrated later
    return Deployment(catalog.model(q.model, allow_paths), catalog.device(q.hardware), q.gpus,
                      q.precision, q.context, efficiency, q.overhead, q.kv_dtype,
                      q.kv_bytes_per_token, q.engine)


def calibrated_for(q: PlanQuery, catalog: Catalog, allow_paths: bool = True) -> Calibrated:
    """The plan's capacity: calibrated unless the query fixes an efficiency."""
    return plan_calibrated(deployment_for(q, catalog, allow_paths), q.batch,
                           calibrated=q.efficiency is None, engine=q.engine,
                           user_speed=q.user_speed)


def api_model_in(plist: PriceList, model: ModelSpec) -> str:
    """The name `plist` prices this model under (its API names, id, aliases; or the only one)."""
    listed = plist.models()
    for name in (*model.api_models, model.id, *model.aliases):
        if name in listed:
            return name
    if len(listed) == 1:
        return listed[0]
    raise InvalidParameters(f"price list {plist.id} prices {', '.join(listed)}; none of them is "
                            f"{model.name}", param="price_list")


def _output_at_mix(q: PlanQuery, cap: Capacity) -> float:
    return blended_output_capacity(cap.hit_tokens_per_s, cap.prefill_tokens_per_s,
                                   cap.decode_tokens_per_s, q.input_per_output, q.hit_rate) \
        if cap.decode else 0.0


def _margin(q: PlanQuery, out_tps: float, per_output: Decimal,
            cost_per_hour: Decimal) -> tuple[Decimal, Decimal | None]:
    tokens_per_hour = Decimal(repr(out_tps * 3600 * q.utilisation))
    revenue = round_money(tokens_per_hour * per_output / 1_000_000)
    margin = round_money((revenue - cost_per_hour) / cost_per_hour) if cost_per_hour else None
    return revenue, margin


def _price_block(q: PlanQuery, cal: Calibrated, plist: PriceList,
                 cost_per_hour: Decimal) -> dict[str, Any]:
    cap = cal.capacity
    if plist.currency != "USD":
        raise InvalidParameters(f"price list {plist.id} is in {plist.currency}; the GPU-hour price "
                                "is in USD: use a USD list", param="price_list")
    name = api_model_in(plist, cap.deployment.model)
    prices = price_at(plist, name, q.at) if q.at else plist.list_prices(name, datetime.now(UTC))
    out_tps = _output_at_mix(q, cap)
    per_output = (prices.output + Decimal(repr(q.input_per_output)) * (
        Decimal(repr(1 - q.hit_rate)) * prices.miss + Decimal(repr(q.hit_rate)) * prices.hit))
    revenue, margin = _margin(q, out_tps, per_output, cost_per_hour)
    ends = {end: _margin(q, _output_at_mix(q, cal.scaled(end)), per_output, cost_per_hour)
            for end in ("low", "high")}
    return {
        "id": plist.id, "model": name, "unit_prices": prices.as_dict(),
        "priced_at": q.at.isoformat() if q.at else "list prices (outside time-of-day windows)",
        "mix": {"input_per_output": q.input_per_output, "cache_hit_rate": q.hit_rate},
        "output_tokens_per_s_at_mix": out_tps,
        "revenue_usd_per_hour_at_capacity": revenue,
        "cost_usd_per_hour": cost_per_hour,
        "cost_profit_margin_at_capacity": margin,
        "cost_profit_margin_range": {"low": ends["low"][1], "high": ends["high"][1]},
        "revenue_usd_per_hour_range": {"low": ends["low"][0], "high": ends["high"][0]},
        "break_even_fraction_of_list_price": round_money(cost_per_hour / revenue) if revenue else None,
    }


def capacity_json(cap: Capacity) -> dict[str, Any]:
    d, m, r = cap.deployment, cap.memory, cap.roofline
    a = d.model.attention
    return {
        "model": {"id": d.model.id, "name": d.model.name, "params_total": d.model.params_total,
                  "params_active": d.model.params_active, "attention": a.kind if a else None,
                  "native_precision": d.model.native_precision, "source": d.model.source},
        "hardware": {"id": d.hw.id, "name": d.hw.name, "memory_gb": d.hw.memory_gb,
                     "bandwidth_tbs": d.hw.bandwidth_tbs, "compute": d.hw.compute_used(
                         cap.precision.compute), "tflops": r.hw.peak_flops(cap.precision.compute) / 1e12,
                     "per_node": d.hw.per_node, "kind": d.hw.kind, "unit": d.hw.unit_name,
                     "source": d.hw.source},
        "gpus": d.gpus, "nodes": m.nodes, "precision": cap.precision.name,
        "bits_per_weight": round(cap.precision.bits_per_weight, 4), "context": d.context,
        "kv_dtype": d.kv_dtype, "kv_bytes_per_token": m.kv_bytes_per_token,
        "kv_bytes_per_sequence": m.kv_bytes_per_sequence, "weights_bytes": m.weights_bytes,
        "memory_bytes": m.memory_bytes, "overhead_bytes": m.overhead_bytes,
        "kv_budget_bytes": m.kv_budget_bytes, "fits": m.fits,
        "max_concurrent_sequences": m.max_concurrent_sequences,
        "min_gpus_to_fit": m.min_gpus_to_fit, "min_nodes_to_fit": m.min_nodes_to_fit,
        "decode_batch": cap.decode.batch if cap.decode else 0,
        "decode_tokens_per_s": cap.decode_tokens_per_s,
        "decode_tokens_per_s_per_sequence": cap.decode.per_sequence_tokens_per_s if cap.decode else 0,
        "decode_bound": cap.decode.bound if cap.decode else None,
        "single_sequence_tokens_per_s": cap.single.per_sequence_tokens_per_s if m.fits else 0,
        "prefill_tokens_per_s": cap.prefill_tokens_per_s if m.fits else 0,
        "per_gpu": {"decode_tokens_per_s": cap.decode_tokens_per_s / d.gpus,
                    "prefill_tokens_per_s": cap.prefill_tokens_per_s / d.gpus if m.fits else 0},
        "overhead_fraction": d.overhead,
    }


ASSUMPTIONS = [
    "throughputs are the roofline (memory bandwidth and dense tensor throughput) times the "
    "efficiency published measurements reach in the same regime: phase, batch, engine, "
    "hardware kind, one device or many (`manxue plan calibration`); low–high is that "
    "efficiency's spread; efficiency 1.0 gives the bound itself",
    "the decode batch is the largest that keeps each sequence at the per-user speed target "
    "and fits in memory, unless a batch is given",
    "weights stored once across the GPUs; KV cache pooled across them (data-parallel attention)",
    "every sequence holds `context` tokens of KV cache while decoding",
    "token costs: each class costed as if the GPUs did only that work; cache hits cost only "
    "writing their KV into HBM (storage not modelled)",
]


def build_report(q: PlanQuery, catalog: Catalog, allow_paths: bool = True,
                 price_lists: dict[str, PriceList] | None = None) -> dict[str, Any]:
    """Everything `manxue plan` prints; money as Decimal (see `jsonable`)."""
    if not 0 <= q.hit_rate <= 1 or q.input_per_output < 0:
        raise InvalidParameters("hit_rate must be in [0, 1] and input_per_output >= 0")
    plist = get_price_list(q.price_list, price_lists) if q.price_list else None
    cal = calibrated_for(q, catalog, allow_paths)
    cap = cal.capacity
    out = capacity_json(cap) | {"throughput": cal.ranges()}
    cost_per_hour = q.gpus * q.gpu_hour
    costs = cost_prices(cap.hit_tokens_per_s, cap.prefill_tokens_per_s, cap.decode_tokens_per_s,
                        q.gpus, q.gpu_hour, q.utilisation) if cap.memory.fits else None
    out |= {
        "gpu_hour_usd": q.gpu_hour, "utilisation": q.utilisation, "cost_usd_per_hour": cost_per_hour,
        "usd_per_million_output_tokens": costs.output if costs else None,
        "usd_per_million_input_miss_tokens": costs.miss if costs else None,
        "usd_per_million_input_hit_tokens": costs.hit if costs else None,
        "usd_per_million_output_tokens_single_sequence": usd_per_million(
            cap.single.per_sequence_tokens_per_s, q.gpus, q.gpu_hour, q.utilisation)
        if cap.memory.fits else None,
        "assumptions": ASSUMPTIONS,
    }
    if plist is not None:
        out["price_list"] = _price_block(q, cal, plist, cost_per_hour) if cap.memory.fits else {
            "id": plist.id, "note": "the model does not fit: no capacity to sell"}
    return out


def jsonable(value: Any) -> Any:
    """Decimals → float (money was computed exactly; JSON carries the result)."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value
