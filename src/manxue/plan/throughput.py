"""Roofline throughput: upper bounds from memory bandwidth and dense tensor throughput.

Decode, one step for a batch of B sequences each holding `context` tokens of KV:
    bytes  = weights touched + B × context × kv_bytes_per_token
             (MoE: shared weights + the routed experts the batch hits, E·(1 − (1 − k/E)^B))
    flops  = B × (2 × active params + attention flops at `context`)
    step   = max(bytes / (bandwidth × gpus × eff), flops / (peak × gpus × eff))
    tokens/s = B / step           (per sequence: 1 / step)
Prefill is compute-bound at large batches: peak × gpus × eff / (2 × active + attention at
prompt/2). Communication, scheduling and kernel efficiency are not modelled, so measured
figures sit below these (the calibration table in docs/plan.md shows by how much); `efficiency`
(0 < eff <= 1) derates both roofs.
"""

from __future__ import annotations

from dataclasses import dataclass

from manxue.errors import InvalidParameters
from manxue.plan.precision import Precision
from manxue.plan.specs import HardwareSpec, ModelSpec


@dataclass(frozen=True, slots=True)
class Roofline:
    model: ModelSpec
    hw: HardwareSpec
    gpus: int
    precision: Precision
    weights_bytes: float
    kv_bytes_per_token: int
    efficiency: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.efficiency <= 1:
            raise InvalidParameters("efficiency must be in (0, 1]", param="efficiency")

    @property
    def bandwidth(self) -> float:
        return self.hw.bandwidth_bytes_s * self.gpus * self.efficiency

    @property
    def peak_flops(self) -> float:
        return self.hw.peak_flops(self.precision.compute) * self.gpus * self.efficiency

    @property
    def bytes_per_param(self) -> float:
        return self.weights_bytes / self.model.params_total


@dataclass(frozen=True, slots=True)
class Step:
    batch: int
    seconds: float
    bytes: float
    flops: float
    bound: str

    @property
    def tokens_per_s(self) -> float:
        return self.batch / self.seconds

    @property
    def per_sequence_tokens_per_s(self) -> float:
        return 1 / self.seconds


def touched_params(model: ModelSpec, batch: int) -> float:
    """Parameters a decode step reads for `batch` tokens (all of them for dense models)."""
    ex = model.experts
    if ex is None or not model.is_moe:
        return model.params_total
    routed_total = (model.params_total - model.params_active) * ex.routed / (ex.routed - ex.per_token)
    hit = 1 - (1 - ex.per_token / ex.routed) ** batch
    return model.params_total - routed_total + routed_total * hit


def attention_flops(model: ModelSpec, kv_len: float, decode: bool) -> float:
    """FLOPs of attention for one token over kv_len cached tokens (QKᵀ and AV)."""
    a = model.attention
    if a is None or model.layers is None:
        return 0.0
    if a.kind == "mla" and decode:  # absorbed: scores and values in the latent space
        width = 2 * a.kv_lora_rank + a.qk_rope_head_dim
    else:
        width = a.qk_head_dim + a.v_head_dim
    return 2.0 * a.heads * width * kv_len * model.layers


def decode_step(r: Roofline, batch: int, context: int) -> Step:
    if batch < 1:
        raise InvalidParameters("batch must be >= 1", param="batch")
    weight_bytes = touched_params(r.model, batch) * r.bytes_per_param
    kv_bytes = float(batch) * context * r.kv_bytes_per_token
    flops = batch * (2 * r.model.params_active + attention_flops(r.model, context, decode=True))
    t_mem = (weight_bytes + kv_bytes) / r.bandwidth
    t_cmp = flops / r.peak_flops
    return Step(batch, max(t_mem, t_cmp), weight_bytes + kv_bytes, flops,
                "memory" if t_mem >= t_cmp else "compute")


def prefill_tokens_per_s(r: Roofline, prompt: int) -> float:
    per_token = 2 * r.model.params_active + attention_flops(r.model, prompt / 2, decode=False)
    return r.peak_flops / per_token


def hit_tokens_per_s(r: Roofline) -> float:
    """Cache-hit input: no compute, only its KV written into HBM (a lower bound on its cost)."""
    return r.bandwidth / r.kv_bytes_per_token if r.kv_bytes_per_token else float("inf")


def batch_curve(r: Roofline, context: int, max_batch: int, points: int = 24) -> list[Step]:
    """Decode steps at batches 1, 2, 4, … up to max_batch (geometric)."""
    batches: list[int] = []
    b = 1.0
    while b < max_batch and len(batches) < points:
        if int(b) not in batches:
            batches.append(int(b))
        b *= 2 ** 0.5
    batches.append(max_batch)
    return [decode_step(r, n, context) for n in batches]
