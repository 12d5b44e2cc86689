"""What the planner knows about a model and a piece of hardware (immutable, typed)."""

from __future__ import annotations

from dataclasses import dataclass, field

ATTENTION_KINDS = ("mla", "gqa", "mha")


@dataclass(frozen=True, slots=True)
class Attention:
    """Attention layout. MLA caches kv_lora_rank + qk_rope_head_dim values per layer; GQA/MHA
    cache K (head_dim) and V (v_head_dim) for each of kv_heads."""

    kind: str
    heads: int
    kv_heads: int = 0
    head_dim: int = 0
    v_head_dim: int = 0
    kv_lora_rank: int = 0
    q_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    qk_nope_head_dim: int = 0

    @property
    def qk_head_dim(self) -> int:
        """Width of one query/key head (MLA: nope + rope)."""
        return self.qk_nope_head_dim + self.qk_rope_head_dim if self.kind == "mla" else self.head_dim


@dataclass(frozen=True, slots=True)
class Experts:
    """Mixture of experts: routed experts per MoE layer, shared ones, routed used per token."""

    routed: int
    shared: int
    per_token: int
    dense_layers: int = 0


@dataclass(frozen=True, slots=True)
class ModelSpec:
    id: str
    name: str
    params_total: float
    params_active: float
    native_precision: str
    layers: int | None = None
    hidden: int | None = None
    attention: Attention | None = None
    experts: Experts | None = None
    vocab: int | None = None
    max_positions: int | None = None
    tokenizer: str = ""
    aliases: tuple[str, ...] = ()
    api_models: tuple[str, ...] = ()
    source: str = ""
    note: str = ""
    weights_bytes: int | None = None          # exact size when read from a GGUF file
    weights_precision: str | None = None      # the quantization of that file

    @property
    def is_moe(self) -> bool:
        return self.experts is not None and self.experts.routed > self.experts.per_token


@dataclass(frozen=True, slots=True)
class HardwareSpec:
    """One accelerator (or one host, for CPU and SoC profiles)."""

    id: str
    name: str
    kind: str
    memory_gb: float
    bandwidth_tbs: float
    bf16_tflops: float
    fp8_tflops: float | None = None
    int8_tops: float | None = None
    vector_tflops: float | None = None   # SIMD peak for engines without matrix-unit kernels
    sockets: int = 1                     # CPU hosts: NUMA nodes the memory is split over
    unit: str = ""                       # what one entry is: GPU, host, socket, machine, board
    interconnect: str = ""
    interconnect_gbs: float | None = None
    per_node: int = 8
    source: str = ""
    note: str = ""
    aliases: tuple[str, ...] = field(default=())

    @property
    def unit_name(self) -> str:
        """What `--gpus N` counts for this hardware: GPUs, or hosts / machines for CPUs and SoCs."""
        return self.unit or {"cpu": "host", "soc": "machine", "npu": "board"}.get(self.kind, "GPU")

    @property
    def memory_bytes(self) -> float:
        return self.memory_gb * 1e9

    @property
    def bandwidth_bytes_s(self) -> float:
        return self.bandwidth_tbs * 1e12

    def peak_flops(self, compute: str) -> float:
        """Dense FLOP/s for a compute type, falling back to BF16 where the type is missing."""
        table = {"fp8": self.fp8_tflops, "int8": self.int8_tops}
        tflops = table.get(compute) or self.bf16_tflops
        return tflops * 1e12

    def compute_used(self, compute: str) -> str:
        return compute if {"fp8": self.fp8_tflops, "int8": self.int8_tops}.get(compute) else "bf16"
