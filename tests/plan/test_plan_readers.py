"""User models from a HF config.json, a GGUF file, or a catalog TOML."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFWriter

from manxue.errors import ConfigError, InvalidParameters, ModelNotFound
from manxue.plan.capacity import Deployment, plan_capacity
from manxue.plan.catalog import builtin_catalog, load_catalog
from manxue.plan.memory import kv_bytes_per_token

V3_CONFIG = {
    "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
    "hidden_size": 7168, "intermediate_size": 18432, "moe_intermediate_size": 2048,
    "num_hidden_layers": 61, "num_attention_heads": 128, "num_key_value_heads": 128,
    "n_routed_experts": 256, "n_shared_experts": 1, "num_experts_per_tok": 8,
    "first_k_dense_replace": 3, "kv_lora_rank": 512, "q_lora_rank": 1536,
    "qk_rope_head_dim": 64, "qk_nope_head_dim": 128, "v_head_dim": 128, "vocab_size": 129280,
    "max_position_embeddings": 163840, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "quantization_config": {"quant_method": "fp8", "fmt": "e4m3"},
}
QWEN7B_CONFIG = {
    "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
    "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064,
    "max_position_embeddings": 131072, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
}


def write_json(tmp_path: Path, name: str, cfg: dict[str, object]) -> Path:
    d = tmp_path / name
    d.mkdir()
    p = d / "config.json"
    p.write_text(json.dumps(cfg))
    return p


def test_v3_config_json_gives_671b_37b_and_70272(tmp_path: Path) -> None:
    m = builtin_catalog().model(str(write_json(tmp_path, "DeepSeek-V3", V3_CONFIG)))
    assert m.id == "DeepSeek-V3" and m.native_precision == "fp8"
    assert m.params_total == pytest.approx(671e9, rel=0.002)
    assert m.params_active == pytest.approx(37e9, rel=0.02)
    assert kv_bytes_per_token(m) == 70_272


def test_qwen_7b_config_counts_7_6b(tmp_path: Path) -> None:
    m = builtin_catalog().model(str(write_json(tmp_path, "qwen", QWEN7B_CONFIG)))
    assert m.attention is not None and m.attention.kind == "gqa"
    assert m.params_total == pytest.approx(7.6e9, rel=0.01)
    assert kv_bytes_per_token(m) == 57_344


def _gguf(path: Path, arch: str, meta: dict[str, int], tensors: dict[str, np.ndarray]) -> Path:
    w = GGUFWriter(str(path), arch)
    w.add_name(path.stem)
    for key, value in meta.items():
        w.add_uint32(f"{arch}.{key}", value)
    for name, data in tensors.items():
        w.add_tensor(name, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_gguf_llama_reads_layout_and_exact_size(tmp_path: Path) -> None:
    p = _gguf(tmp_path / "tiny-llama.gguf", "llama",
              {"block_count": 2, "embedding_length": 64, "attention.head_count": 4,
               "attention.head_count_kv": 2, "context_length": 128},
              {"token_embd.weight": np.zeros((32, 64), np.float32),
               "blk.0.attn_q.weight": np.zeros((64, 64), np.float16)})
    m = builtin_catalog().model(str(p))
    assert m.weights_bytes == 32 * 64 * 4 + 64 * 64 * 2 and m.params_total == 32 * 64 + 64 * 64
    assert m.attention is not None and (m.attention.kv_heads, m.attention.head_dim) == (2, 16)
    assert kv_bytes_per_token(m) == 2 * 2 * 16 * 2 * 2
    cap = plan_capacity(Deployment(m, builtin_catalog().device("rtx4090"), 1, context=128))
    assert cap.memory.weights_bytes == m.weights_bytes and cap.memory.fits


def test_gguf_moe_mla_counts_active_experts(tmp_path: Path) -> None:
    p = _gguf(tmp_path / "tiny-deepseek2.gguf", "deepseek2",
              {"block_count": 1, "embedding_length": 64, "attention.head_count": 4,
               "attention.kv_lora_rank": 32, "rope.dimension_count": 8,
               "attention.key_length": 24, "attention.value_length": 16,
               "expert_count": 8, "expert_used_count": 2, "expert_shared_count": 1},
              {"token_embd.weight": np.zeros((16, 64), np.float32),
               "blk.0.ffn_up_exps.weight": np.zeros((8, 32, 64), np.float16)})
    m = builtin_catalog().model(str(p))
    assert m.params_total == 16 * 64 + 8 * 32 * 64
    assert m.params_active == 16 * 64 + 2 * 32 * 64
    assert m.attention is not None and m.attention.kind == "mla"
    assert m.attention.qk_nope_head_dim == 16 and m.experts is not None
    assert kv_bytes_per_token(m) == (32 + 8) * 1 * 2


def test_user_catalog_adds_models_and_hardware(tmp_path: Path) -> None:
    write_json(tmp_path, "qwen", QWEN7B_CONFIG)
    f = tmp_path / "mine.toml"
    f.write_text('''
[[model]]
id = "my-qwen"
config = "qwen/config.json"

[[model]]
id = "tiny"
params_total = 1e9
layers = 4
attention = { kind = "gqa", heads = 8, kv_heads = 2, head_dim = 64 }

[[hardware]]
id = "l40s"
name = "NVIDIA L40S"
memory_gb = 48
bandwidth_tbs = 0.864
bf16_tflops = 362
fp8_tflops = 733
per_node = 8
source = "my datasheet"
''')
    cat = load_catalog(f)
    assert cat.model("my-qwen").params_total == pytest.approx(7.6e9, rel=0.01)
    assert kv_bytes_per_token(cat.model("tiny")) == 2 * 2 * 64 * 4 * 2
    assert cat.device("L40S").memory_gb == 48
    assert "deepseek-r1" in cat.models            # shipped entries stay


def test_lookup_errors() -> None:
    cat = builtin_catalog()
    with pytest.raises(ModelNotFound, match="deepseek-r1"):
        cat.model("gpt-5")
    with pytest.raises(ModelNotFound):
        cat.model("/etc/config.json", allow_paths=False)
    with pytest.raises(InvalidParameters, match="h800"):
        cat.device("tpu-v9")
    assert cat.model("DeepSeek-Reasoner").id == "deepseek-r1"


def test_bad_catalog_file(tmp_path: Path) -> None:
    f = tmp_path / "bad.toml"
    f.write_text("[[model]]\nid='x'\nparams_total=1e9\nlayerz=3\n")
    with pytest.raises(ConfigError, match="unknown key"):
        load_catalog(f)
    with pytest.raises(ConfigError, match="cannot read"):
        load_catalog(tmp_path / "missing.toml")
