"""KV cache bytes per token: every published figure, and the formulas behind them."""

from __future__ import annotations

import pytest

from manxue.plan.catalog import builtin_catalog
from manxue.plan.memory import kv_bytes_per_token, mha_kv_bytes_per_token


def kv(model: str, dtype: str = "bf16") -> int:
    return kv_bytes_per_token(builtin_catalog().model(model), dtype)


def test_deepseek_v3_mla_is_70272_bytes_per_token_in_bf16() -> None:
    assert kv("deepseek-v3") == (512 + 64) * 61 * 2 == 70_272
    assert kv("deepseek-r1") == 70_272
    assert kv("deepseek-r1", "fp8") == 35_136


def test_same_model_with_standard_mha_is_4997120_bytes() -> None:
    mha = mha_kv_bytes_per_token(builtin_catalog().model("deepseek-v3"))
    assert mha == 128 * (192 + 128) * 61 * 2 == 4_997_120
    assert round(mha / kv("deepseek-v3")) == 71


def test_v2_lite_mla_is_31104_bytes() -> None:
    assert kv("deepseek-v2-lite") == (512 + 64) * 27 * 2 == 31_104


@pytest.mark.parametrize(("model", "layers", "kv_heads", "head_dim"), [
    ("deepseek-r1-distill-qwen-1.5b", 28, 2, 1536 // 12),
    ("deepseek-r1-distill-qwen-7b", 28, 4, 3584 // 28),
    ("deepseek-r1-distill-qwen-14b", 48, 8, 5120 // 40),
    ("deepseek-r1-distill-qwen-32b", 64, 8, 5120 // 40),
    ("deepseek-r1-distill-llama-8b", 32, 8, 4096 // 32),
    ("deepseek-r1-distill-llama-70b", 80, 8, 8192 // 64),
])
def test_gqa_distills_follow_the_formula(model: str, layers: int, kv_heads: int,
                                         head_dim: int) -> None:
    assert kv(model) == 2 * layers * kv_heads * head_dim * 2


def test_published_dense_comparisons() -> None:
    assert kv("qwen2.5-72b") == 327_680          # "327.68 KB"
    assert kv("llama-3.1-405b") == 516_096       # "516.1 KB"
    assert kv("qwen-2.5-72b") == kv("qwen2.5-72b")  # alias


def test_every_catalog_model_with_a_layout_has_a_kv_size() -> None:
    cat = builtin_catalog()
    for m in cat.models.values():
        if m.attention is not None:
            assert kv_bytes_per_token(m) > 0, m.id
