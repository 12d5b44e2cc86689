"""Parameter counts from a decoder-only transformer's dimensions (for config.json models).

Counts the matrices (embeddings, attention, MLP or experts, router); norms and biases are a
rounding error at these sizes and are left out. DeepSeek-V3's dimensions give 671.0B total
and 37.5B active (published: 671B / 37B).
"""

from __future__ import annotations

from dataclasses import dataclass

from manxue.plan.specs import Attention, Experts


@dataclass(frozen=True, slots=True)
class Dims:
    layers: int
    hidden: int
    vocab: int
    intermediate: int
    attention: Attention
    experts: Experts | None = None
    moe_intermediate: int = 0
    tied_embeddings: bool = False


def attention_params(a: Attention, hidden: int) -> int:
    if a.kind == "mla":
        q_width = a.heads * a.qk_head_dim
        q = hidden * a.q_lora_rank + a.q_lora_rank * q_width if a.q_lora_rank else hidden * q_width
        kv_a = hidden * (a.kv_lora_rank + a.qk_rope_head_dim)
        kv_b = a.kv_lora_rank * a.heads * (a.qk_nope_head_dim + a.v_head_dim)
        return q + kv_a + kv_b + a.heads * a.v_head_dim * hidden
    q = hidden * a.heads * a.head_dim
    kv = hidden * a.kv_heads * (a.head_dim + a.v_head_dim)
    return q + kv + a.heads * a.v_head_dim * hidden


def expert_params(d: Dims) -> int:
    """One routed expert in one layer (gate, up, down projections)."""
    return 3 * d.hidden * d.moe_intermediate


def count_params(d: Dims) -> tuple[int, int]:
    """(total, active) parameters."""
    embed = d.vocab * d.hidden * (1 if d.tied_embeddings else 2)
    attn = attention_params(d.attention, d.hidden) * d.layers
    dense_mlp = 3 * d.hidden * d.intermediate
    ex = d.experts
    if ex is None or ex.routed == 0:
        total = embed + attn + dense_mlp * d.layers
        return total, total
    moe_layers = d.layers - ex.dense_layers
    per_moe_layer = (ex.routed + ex.shared) * expert_params(d) + d.hidden * ex.routed
    total = embed + attn + dense_mlp * ex.dense_layers + per_moe_layer * moe_layers
    idle = (ex.routed - ex.per_token) * expert_params(d) * moe_layers
    return total, total - idle
