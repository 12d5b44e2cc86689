"""A GGUF file → ModelSpec, with the exact weight size of its tensors.

Metadata keys follow llama.cpp (`{arch}.block_count`, `{arch}.attention.head_count_kv`, …).
Parameters are the tensors' element counts; active parameters count the routed-expert tensors
(`*_exps`) at `expert_used_count / expert_count`.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from manxue.errors import InvalidParameters
from manxue.plan.specs import Attention, Experts, ModelSpec


def _fields(reader: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, field in reader.fields.items():
        try:
            out[key] = field.contents()
        except (ValueError, IndexError, TypeError):
            continue
    return out


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else value


def _attention(meta: dict[str, Any], arch: str, hidden: int) -> Attention | None:
    def get(key: str, default: int = 0) -> int:
        v = _first(meta.get(f"{arch}.{key}"))
        return int(v) if v is not None else default

    heads = get("attention.head_count")
    if heads == 0:
        return None
    kv_lora = get("attention.kv_lora_rank")
    if kv_lora:
        rope = get("rope.dimension_count")
        qk = get("attention.key_length_mla") or get("attention.key_length")
        v = get("attention.value_length_mla") or get("attention.value_length")
        return Attention("mla", heads, heads, kv_lora_rank=kv_lora,
                         q_lora_rank=get("attention.q_lora_rank"), qk_rope_head_dim=rope,
                         qk_nope_head_dim=max(qk - rope, 0), v_head_dim=v)
    kv_heads = get("attention.head_count_kv", heads)
    head_dim = get("attention.key_length", hidden // heads)
    v_dim = get("attention.value_length", head_dim)
    return Attention("gqa" if kv_heads < heads else "mha", heads, kv_heads, head_dim, v_dim)


def model_from_gguf(path: Path) -> ModelSpec:
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
    except (OSError, ValueError) as exc:
        raise InvalidParameters(f"cannot read {path} as GGUF: {exc}", param="model") from None
    meta = _fields(reader)
    arch = str(meta.get("general.architecture", ""))
    if not arch:
        raise InvalidParameters(f"{path}: no general.architecture in the GGUF metadata", param="model")
    hidden = int(meta.get(f"{arch}.embedding_length", 0))
    layers = int(meta.get(f"{arch}.block_count", 0))
    n_exp = int(meta.get(f"{arch}.expert_count", 0))
    used = int(meta.get(f"{arch}.expert_used_count", 0))
    total = active = 0.0
    size = 0
    types: Counter[str] = Counter()
    for t in reader.tensors:
        n, b = int(t.n_elements), int(t.n_bytes)
        total += n
        size += b
        types[t.tensor_type.name] += b
        active += n * used / n_exp if "_exps" in t.name and n_exp else n
    experts = Experts(n_exp, int(meta.get(f"{arch}.expert_shared_count", 0)), used,
                      int(meta.get(f"{arch}.leading_dense_block_count", 0))) if n_exp else None
    tokens = meta.get("tokenizer.ggml.tokens")
    main_type = types.most_common(1)[0][0].lower() if types else "unknown"
    return ModelSpec(
        id=str(meta.get("general.name") or path.stem), name=str(meta.get("general.name") or path.stem),
        params_total=total, params_active=active, native_precision=main_type,
        layers=layers or None, hidden=hidden or None, attention=_attention(meta, arch, hidden),
        experts=experts, vocab=len(tokens) if isinstance(tokens, list) else None,
        max_positions=int(meta.get(f"{arch}.context_length", 0)) or None,
        source=f"GGUF file {path.name} (architecture {arch})",
        weights_bytes=size, weights_precision=main_type)
