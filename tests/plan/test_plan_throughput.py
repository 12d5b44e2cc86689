"""Roofline estimates stay above every published measurement (they are upper bounds)."""

from __future__ import annotations

import pytest

from manxue.plan.calibration import anchors, calibration
from manxue.plan.capacity import Deployment, plan_capacity
from manxue.plan.catalog import builtin_catalog
from manxue.plan.throughput import batch_curve, touched_params

ROWS = {r.anchor.id: r for r in calibration()}


@pytest.mark.parametrize("anchor_id", [a.id for a in anchors()])
def test_estimate_is_an_upper_bound_of_the_published_figure(anchor_id: str) -> None:
    row = ROWS[anchor_id]
    print(f"{anchor_id}: published {row.anchor.published:,.2f}, estimate {row.estimate:,.1f}, "
          f"ratio {row.ratio:.2f}")
    assert row.ratio >= 1, f"{anchor_id}: estimate {row.estimate:.1f} < published {row.anchor.published}"


def test_ratios_at_scale_are_within_an_order_of_magnitude() -> None:
    # Large, batched production systems land within 10× of the roof; a bound 100× away would
    # say nothing. Single-user and CPU engines may sit far below it.
    for anchor_id in ("deepseek-decode", "deepseek-prefill", "sglang-prefill", "sglang-decode",
                      "vllm-wide-ep", "chitu-b2048", "ktransformers-decode",
                      "sglang-a100-llama-8b", "llamacpp-7b-h100-decode"):
        assert 1 <= ROWS[anchor_id].ratio < 10, anchor_id


def test_published_figures_are_the_facts() -> None:
    published = {a.id: a.published for a in anchors()}
    assert published["deepseek-decode"] == 14_800
    assert published["deepseek-prefill"] == 73_700
    assert published["sglang-prefill"] == 52_300 and published["sglang-decode"] == 22_300
    assert published["vllm-wide-ep"] == 2_200
    assert published["ktransformers-prefill"] == 286.55
    assert published["ktransformers-decode"] == 13.69
    assert published["llamacpp-cpu-prefill"] == 10.31 and published["llamacpp-cpu-decode"] == 4.51
    assert published["chitu-b1"] == 24.30 and published["chitu-b16"] == 203.71
    assert published["chitu-b2048"] == 16_022.60
    assert published["llamacpp-1.58bit-single"] == 10.69   # the run behind "10 to 14 tok/s"
    assert published["llamacpp-1.58bit-2xh100-bench"] == 11.89
    assert published["llamacpp-7b-m2-ultra-prefill"] == 1238.48
    assert published["llamacpp-7b-m2-ultra-decode"] == 94.27
    assert published["sglang-a100-llama-8b"] == 4281.51
    assert published["rkllm-rk3588-qwen25-15b-decode"] == 16.69


def test_moe_reads_only_active_weights_at_batch_one_and_all_at_large_batch() -> None:
    r1 = builtin_catalog().model("deepseek-r1")
    assert touched_params(r1, 1) == pytest.approx(37e9)
    assert touched_params(r1, 4096) == pytest.approx(671e9, rel=1e-6)
    dense = builtin_catalog().model("llama-3.1-70b")
    assert touched_params(dense, 1) == touched_params(dense, 64) == 70e9


def test_decode_throughput_grows_with_batch_and_turns_compute_bound() -> None:
    c = builtin_catalog()
    cap = plan_capacity(Deployment(c.model("deepseek-r1-distill-llama-8b"), c.device("h100"), 1,
                                   "bf16", 1024))
    curve = batch_curve(cap.roofline, 1024, cap.memory.max_concurrent_sequences)
    tps = [s.tokens_per_s for s in curve]
    assert tps == sorted(tps)
    assert curve[0].bound == "memory"
    # single sequence: 16 GB of weights at 3.35 TB/s ≈ 209 tok/s (plus a little KV)
    assert curve[0].tokens_per_s == pytest.approx(3.35e12 / (16e9 + 1024 * 131_072), rel=1e-9)


def test_efficiency_scales_the_roof() -> None:
    c = builtin_catalog()
    full = plan_capacity(Deployment(c.model("deepseek-r1"), c.device("h800"), 16, "fp8"))
    half = plan_capacity(Deployment(c.model("deepseek-r1"), c.device("h800"), 16, "fp8",
                                    efficiency=0.5))
    assert half.decode_tokens_per_s == pytest.approx(full.decode_tokens_per_s / 2)
    assert half.prefill_tokens_per_s == pytest.approx(full.prefill_tokens_per_s / 2)
