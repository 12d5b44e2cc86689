"""Weights, fits / doesn't fit, concurrent sequences, smallest deployment."""

from __future__ import annotations

import pytest

from manxue.errors import InvalidParameters
from manxue.plan.capacity import Capacity, Deployment, plan_capacity
from manxue.plan.catalog import builtin_catalog
from manxue.plan.memory import weights_bytes
from manxue.plan.precision import resolve


def cap(model: str, hw: str, gpus: int, precision: str | None = None,
        context: int = 8192) -> Capacity:
    c = builtin_catalog()
    return plan_capacity(Deployment(c.model(model), c.device(hw), gpus, precision, context))


def test_671b_fp8_does_not_fit_on_one_8xh800_node() -> None:
    one = cap("deepseek-r1", "h800", 8, "fp8")
    assert one.memory.weights_bytes == 671e9 > one.memory.memory_bytes * 0.9
    assert not one.memory.fits and one.memory.max_concurrent_sequences == 0
    assert one.decode is None and one.memory.min_nodes_to_fit == 2


def test_671b_fp8_fits_on_two_nodes_with_useful_kv() -> None:
    two = cap("deepseek-r1", "h800", 16, "fp8")
    assert two.memory.fits
    # 1280 GB − 10% − 671 GB = 481 GB of KV: 835 sequences of 8K tokens
    assert two.memory.kv_budget_bytes == pytest.approx(481e9)
    assert two.memory.max_concurrent_sequences == 835


def test_158bit_131gb_quant_fits_on_2xh100() -> None:
    small = cap("deepseek-r1", "h100", 2, "ud-iq1_s")
    assert small.memory.weights_bytes == pytest.approx(131e9)
    assert small.memory.fits and small.memory.max_concurrent_sequences >= 1


def test_native_precision_is_the_default() -> None:
    assert cap("deepseek-v3", "h200", 8).precision.name == "fp8"
    assert cap("deepseek-r1-distill-qwen-7b", "rtx4090", 1).precision.name == "bf16"


@pytest.mark.parametrize(("precision", "bits"), [
    ("bf16", 16), ("fp8", 8), ("int8", 8), ("int4", 4), ("q8_0", 8.5), ("q4_0", 4.5),
    ("q4_k_m", 4.5), ("q6_k", 6.5625), ("iq1_s", 1.5625), ("bpw:2.51", 2.51),
])
def test_precisions(precision: str, bits: float) -> None:
    assert resolve(precision).bits_per_weight == pytest.approx(bits)


def test_weights_scale_with_precision() -> None:
    m = builtin_catalog().model("deepseek-r1-distill-llama-70b")
    assert weights_bytes(m, resolve("bf16")) == 140e9
    assert weights_bytes(m, resolve("int4")) == 35e9


def test_distill_7b_on_one_4090() -> None:
    c = cap("deepseek-r1-distill-qwen-7b", "rtx4090", 1, context=8192)
    # 24 GB × 0.9 − 14 GB = 7.6 GB; 57,344 B × 8192 = 0.47 GB per sequence → 16
    assert c.memory.max_concurrent_sequences == 16


def test_bad_inputs_are_clear() -> None:
    with pytest.raises(InvalidParameters, match="unknown precision"):
        resolve("fp5")
    with pytest.raises(InvalidParameters, match="kv_bytes_per_token"):
        cap("deepseek-v4-flash", "h200", 8)
    c = builtin_catalog()
    v4 = plan_capacity(Deployment(c.model("deepseek-v4-flash"), c.device("h200"), 8,
                                  kv_bytes_per_token=40_000))
    assert v4.memory.fits and v4.memory.weights_bytes == 284e9
    with pytest.raises(InvalidParameters, match="batch 10000"):
        plan_capacity(Deployment(c.model("deepseek-r1"), c.device("h800"), 16, "fp8"), batch=10_000)
