"""Memory: weights at a precision, KV cache bytes per token, does it fit, how many sequences.

KV cache per token (b = bytes per cached value, 2 for BF16):
    MLA        (kv_lora_rank + qk_rope_head_dim) × layers × b     DeepSeek-V3: 576 × 61 × 2 = 70,272
    GQA / MHA  kv_heads × (head_dim + v_head_dim) × layers × b    Qwen2.5-72B: 8 × 256 × 80 × 2 = 327,680

Sizing assumptions (documented in docs/plan.md):
  * weights are stored once across the GPUs (tensor / expert parallel);
  * the KV cache is pooled across the GPUs (data-parallel attention, as DeepSeek and SGLang
    serve MLA); with pure tensor parallelism MLA's cache is replicated per GPU instead;
  * `overhead_fraction` of every GPU's memory is kept for activations, the CUDA context and
    fragmentation (0.10 by default, like vLLM's default gpu_memory_utilization of 0.9);
  * a plan "fits" when, after weights and overhead, at least one sequence of `context`
    tokens has room for its KV cache.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from manxue.errors import InvalidParameters
from manxue.plan.precision import Precision
from manxue.plan.specs import HardwareSpec, ModelSpec

KV_DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp8": 1}


def kv_bytes_per_token(model: ModelSpec, kv_dtype: str = "bf16") -> int:
    """Bytes of KV cache one token occupies, all layers together."""
    b = _kv_bytes(kv_dtype)
    a = model.attention
    if a is None or model.layers is None:
        raise InvalidParameters(
            f"{model.name}: its attention / KV layout is not in the catalog; pass "
            "kv_bytes_per_token (CLI --kv-bytes-per-token) or add the model to a catalog file",
            param="kv_bytes_per_token")
    if a.kind == "mla":
        return (a.kv_lora_rank + a.qk_rope_head_dim) * model.layers * b
    return a.kv_heads * (a.head_dim + a.v_head_dim) * model.layers * b


def mha_kv_bytes_per_token(model: ModelSpec, kv_dtype: str = "bf16") -> int:
    """The same model with standard multi-head attention (every head caches full K and V)."""
    a = model.attention
    if a is None or model.layers is None:
        raise InvalidParameters(f"{model.name}: attention layout unknown", param="model")
    return a.heads * (a.qk_head_dim + a.v_head_dim) * model.layers * _kv_bytes(kv_dtype)


def _kv_bytes(kv_dtype: str) -> int:
    if kv_dtype not in KV_DTYPE_BYTES:
        raise InvalidParameters(f"kv dtype must be one of {', '.join(KV_DTYPE_BYTES)}",
                                param="kv_dtype")
    return KV_DTYPE_BYTES[kv_dtype]


def weights_bytes(model: ModelSpec, precision: Precision | None) -> float:
    """Weights at `precision`; None means as read (a GGUF file's exact size) or native."""
    if precision is None and model.weights_bytes is not None:
        return float(model.weights_bytes)
    if precision is None:
        raise InvalidParameters("precision is required", param="precision")
    return model.params_total * precision.bytes_per_weight


@dataclass(frozen=True, slots=True)
class MemoryPlan:
    gpus: int
    nodes: int
    memory_bytes: float
    weights_bytes: float
    overhead_bytes: float
    kv_budget_bytes: float
    kv_bytes_per_token: int
    context: int
    kv_bytes_per_sequence: int
    max_concurrent_sequences: int
    fits: bool
    min_gpus_to_fit: int
    min_nodes_to_fit: int


def plan_memory(hw: HardwareSpec, gpus: int, weights: float, kv_per_token: int, context: int,
                overhead_fraction: float = 0.10) -> MemoryPlan:
    if gpus < 1:
        raise InvalidParameters("gpus must be >= 1", param="gpus")
    if context < 1:
        raise InvalidParameters("context must be >= 1", param="context")
    if not 0 <= overhead_fraction < 1:
        raise InvalidParameters("overhead fraction must be in [0, 1)", param="overhead")
    total = hw.memory_bytes * gpus
    overhead = total * overhead_fraction
    budget = max(0.0, total - overhead - weights)
    per_seq = kv_per_token * context
    seqs = int(budget // per_seq) if per_seq else 0
    usable_per_gpu = hw.memory_bytes * (1 - overhead_fraction)
    min_gpus = max(1, math.ceil((weights + per_seq) / usable_per_gpu))
    return MemoryPlan(
        gpus=gpus, nodes=math.ceil(gpus / hw.per_node), memory_bytes=total, weights_bytes=weights,
        overhead_bytes=overhead, kv_budget_bytes=budget, kv_bytes_per_token=kv_per_token,
        context=context, kv_bytes_per_sequence=per_seq, max_concurrent_sequences=seqs,
        fits=seqs >= 1, min_gpus_to_fit=min_gpus, min_nodes_to_fit=math.ceil(min_gpus / hw.per_node))
