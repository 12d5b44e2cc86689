"""One deployment's capacity: memory plan + roofline throughput, from resolved specs."""

from __future__ import annotations

from dataclasses import dataclass, replace

from manxue.errors import InvalidParameters
from manxue.plan.memory import MemoryPlan, kv_bytes_per_token, plan_memory, weights_bytes
from manxue.plan.precision import Precision, resolve
from manxue.plan.specs import HardwareSpec, ModelSpec
from manxue.plan.throughput import (
    Roofline,
    Step,
    decode_step,
    hit_tokens_per_s,
    prefill_tokens_per_s,
)


@dataclass(frozen=True, slots=True)
class Deployment:
    """What is planned: a model at a precision on `gpus` accelerators, sized for `context`."""

    model: ModelSpec
    hw: HardwareSpec
    gpus: int
    precision: str | None = None           # None: the model's native precision or its GGUF file
    context: int = 8192
    efficiency: float = 1.0
    overhead: float = 0.10
    kv_dtype: str = "bf16"
    kv_bytes_per_token: int | None = None   # override when the catalog lacks the layout
    engine: str | None = None               # the serving engine, where it changes the roof


@dataclass(frozen=True, slots=True)
class Capacity:
    deployment: Deployment
    precision: Precision
    memory: MemoryPlan
    roofline: Roofline
    decode: Step | None          # at the planned batch; None when nothing fits
    single: Step                 # one sequence alone
    prefill_tokens_per_s: float
    hit_tokens_per_s: float

    @property
    def decode_tokens_per_s(self) -> float:
        return self.decode.tokens_per_s if self.decode else 0.0


def _precision(d: Deployment) -> tuple[Precision, float]:
    if d.precision is None and d.model.weights_bytes is not None:
        size = float(d.model.weights_bytes)
        bits = size * 8 / d.model.params_total
        return Precision(d.model.weights_precision or "gguf", bits, "bf16", "as stored in the GGUF"), size
    p = resolve(d.precision or d.model.native_precision)
    return p, weights_bytes(d.model, p)


LAYER_SPLIT_ENGINES = ("llama.cpp", "manxue", "ollama")


def engine_hardware(hw: HardwareSpec, engine: str | None) -> HardwareSpec:
    """The hardware as `engine` uses it. llama.cpp's CPU kernels run on the SIMD units, not on
    matrix units (AMX), and it does not keep weights next to the socket that reads them: on a
    CPU host its compute roof is the vector peak and its bandwidth one socket's."""
    if engine in LAYER_SPLIT_ENGINES and hw.kind == "cpu":
        return replace(hw, bf16_tflops=hw.vector_tflops or hw.bf16_tflops,
                       fp8_tflops=None if hw.vector_tflops else hw.fp8_tflops,
                       int8_tops=None if hw.vector_tflops else hw.int8_tops,
                       bandwidth_tbs=hw.bandwidth_tbs / hw.sockets)
    return hw


def working_devices(gpus: int, engine: str | None) -> int:
    """Devices that work at the same time on one step: llama.cpp splits a model across GPUs by
    layers, so they take turns (one device's bandwidth and compute); tensor- and
    expert-parallel engines use all of them at once."""
    return 1 if engine in LAYER_SPLIT_ENGINES else gpus


def plan_capacity(d: Deployment, batch: int | None = None) -> Capacity:
    """Memory and throughput; decode at `batch` (default: the most sequences that fit)."""
    if d.kv_bytes_per_token is not None and d.kv_bytes_per_token < 1:
        raise InvalidParameters("kv_bytes_per_token must be >= 1", param="kv_bytes_per_token")
    precision, weights = _precision(d)
    kv = d.kv_bytes_per_token or kv_bytes_per_token(d.model, d.kv_dtype)
    memory = plan_memory(d.hw, d.gpus, weights, kv, d.context, d.overhead)
    roof = Roofline(d.model, engine_hardware(d.hw, d.engine), working_devices(d.gpus, d.engine),
                    precision, weights, kv, d.efficiency)
    n = batch if batch is not None else memory.max_concurrent_sequences
    if batch is not None and batch > memory.max_concurrent_sequences:
        raise InvalidParameters(
            f"batch {batch} needs {batch * memory.kv_bytes_per_sequence / 1e9:.1f} GB of KV cache; "
            f"only {memory.max_concurrent_sequences} sequences of {d.context} tokens fit",
            param="batch")
    return Capacity(
        deployment=d, precision=precision, memory=memory, roofline=roof,
        decode=decode_step(roof, n, d.context) if n >= 1 else None,
        single=decode_step(roof, 1, d.context),
        prefill_tokens_per_s=prefill_tokens_per_s(roof, d.context),
        hit_tokens_per_s=hit_tokens_per_s(roof))
