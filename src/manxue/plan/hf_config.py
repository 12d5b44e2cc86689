"""A Hugging Face `config.json` → ModelSpec (dimensions read, parameters counted)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from manxue.errors import InvalidParameters
from manxue.plan.params import Dims, count_params
from manxue.plan.specs import Attention, Experts, ModelSpec


def _int(cfg: dict[str, Any], *keys: str, default: int | None = None) -> int:
    for k in keys:
        if cfg.get(k) is not None:
            return int(cfg[k])
    if default is None:
        raise InvalidParameters(f"config.json lacks {' / '.join(keys)}", param="model")
    return default


def _attention(cfg: dict[str, Any], hidden: int) -> Attention:
    heads = _int(cfg, "num_attention_heads", "n_head")
    if cfg.get("kv_lora_rank"):
        return Attention("mla", heads, kv_heads=heads, kv_lora_rank=int(cfg["kv_lora_rank"]),
                         q_lora_rank=int(cfg.get("q_lora_rank") or 0),
                         qk_rope_head_dim=_int(cfg, "qk_rope_head_dim"),
                         qk_nope_head_dim=_int(cfg, "qk_nope_head_dim"),
                         v_head_dim=_int(cfg, "v_head_dim"))
    kv_heads = _int(cfg, "num_key_value_heads", "n_head_kv", default=heads)
    head_dim = _int(cfg, "head_dim", default=hidden // heads)
    return Attention("gqa" if kv_heads < heads else "mha", heads, kv_heads, head_dim, head_dim)


def _experts(cfg: dict[str, Any]) -> Experts | None:
    routed = _int(cfg, "n_routed_experts", "num_local_experts", "num_experts", default=0)
    if routed == 0:
        return None
    return Experts(routed=routed, shared=_int(cfg, "n_shared_experts", default=0),
                   per_token=_int(cfg, "num_experts_per_tok", "num_experts_per_token"),
                   dense_layers=_int(cfg, "first_k_dense_replace", default=0))


def _native_precision(cfg: dict[str, Any]) -> str:
    quant = cfg.get("quantization_config") or {}
    if str(quant.get("quant_method", "")).lower() == "fp8" or "fp8" in str(quant.get("fmt", "")):
        return "fp8"
    return {"float16": "fp16", "float32": "bf16"}.get(str(cfg.get("torch_dtype")), "bf16")


def model_from_config(cfg: dict[str, Any], model_id: str) -> ModelSpec:
    hidden = _int(cfg, "hidden_size", "n_embd")
    layers = _int(cfg, "num_hidden_layers", "n_layer")
    attention = _attention(cfg, hidden)
    experts = _experts(cfg)
    vocab = _int(cfg, "vocab_size")
    dims = Dims(layers=layers, hidden=hidden, vocab=vocab,
                intermediate=_int(cfg, "intermediate_size", default=4 * hidden),
                attention=attention, experts=experts,
                moe_intermediate=_int(cfg, "moe_intermediate_size", "intermediate_size",
                                      default=0) if experts else 0,
                tied_embeddings=bool(cfg.get("tie_word_embeddings", False)))
    total, active = count_params(dims)
    return ModelSpec(
        id=model_id, name=model_id, params_total=float(total), params_active=float(active),
        native_precision=_native_precision(cfg), layers=layers, hidden=hidden,
        attention=attention, experts=experts, vocab=vocab,
        max_positions=_int(cfg, "max_position_embeddings", default=0) or None,
        source="config.json (parameters counted from its dimensions)")


def model_from_config_file(path: Path) -> ModelSpec:
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidParameters(f"cannot read {path} as JSON: {exc}", param="model") from None
    if not isinstance(cfg, dict):
        raise InvalidParameters(f"{path}: expected a JSON object", param="model")
    name = path.parent.name if path.name == "config.json" else path.stem
    return model_from_config(cfg, name or "model")
