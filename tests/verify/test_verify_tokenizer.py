"""Tokenizer fingerprint: family identified with 3 requests; padding exposed as an offset."""

from __future__ import annotations

import random

import pytest

from manxue.verify import fingerprint
from manxue.verify.tokenizers import families
from tests.verify.conftest import PAD, Bench, check


@pytest.mark.parametrize("family", ["deepseek", "qwen2.5", "llama3"])
def test_standin_family_is_identified_with_three_requests(bench: Bench, family: str) -> None:
    r = bench.audit("deepseek-reasoner", base_url=bench.standins[family].url, reference=False,
                    claim="deepseek-r1", checks=("tokenizer",), budget_requests=3, seed=11)
    tok = check(r, "tokenizer")
    fits = [f["family"] for f in tok["evidence"]["fits"] if f["fits"]]
    assert fits == [family]
    assert r["requests"] == tok["requests"] == 3
    assert all(e["sent"]["max_tokens"] == 1 for e in tok["evidence"]["exchanges"])
    if family == "deepseek":
        assert tok["status"] == "pass" and not tok["rejects_claim"]
        assert tok["statistic"] == 0.0  # the stand-in adds 4 per message, inside [3, 5]
    else:  # an R1-Distill-Qwen / -Llama behind the R1 name
        assert tok["rejects_claim"] and r["verdict"] == "substituted"
        assert r["posterior"], "the tokenizer evidence moves the posterior"
        top = next(iter(r["posterior"]))
        assert top.startswith("r1-distill-qwen" if family == "qwen2.5" else "r1-distill-llama")


def test_honest_engine_counts_exactly_with_its_own_template(bench: Bench) -> None:
    r = bench.audit("honest", reference=False, checks=("tokenizer",), seed=5)
    tok = check(r, "tokenizer")
    assert tok["status"] == "pass" and tok["statistic"] == 0.0
    exact = tok["evidence"]["expected_overhead"]["exact_prompt_tokens"]
    assert tok["evidence"]["observed"] == exact


def test_padding_is_exposed_as_a_constant_offset(bench: Bench) -> None:
    r = bench.audit("honest", base_url=bench.padding.url, reference=False, checks=("tokenizer",),
                    seed=6)
    tok = check(r, "tokenizer")
    assert tok["rejects_claim"] and r["verdict"] == "substituted"
    assert tok["statistic"] == PAD
    assert "billed 16 prompt tokens more" in tok["summary"]


def test_other_family_behind_the_claimed_name(bench: Bench) -> None:
    r = bench.audit("gemma", reference=False, checks=("tokenizer",), seed=7)
    tok = check(r, "tokenizer")
    assert [f["family"] for f in tok["evidence"]["fits"] if f["fits"]] == ["gemma3"]
    assert tok["rejects_claim"]
    assert next(iter(r["posterior"])) == "gemma-3-270m"


def test_crafted_texts_tell_every_offline_family_apart() -> None:
    fams = families()
    assert {"deepseek", "qwen2.5", "llama3", "cl100k", "o200k", "smollm2"} <= set(fams)
    for seed in range(20):
        probe = fingerprint.craft(random.Random(seed), fams)
        assert probe.ambiguous == (), (seed, probe.unit)
        for name, counts in probe.counts.items():  # each family is found from its own counts
            observed = [c + 7 for c in counts]
            fits = fingerprint.fit(observed, probe.counts)
            assert [f.family for f in fits if f.fits] == [name]
            assert fits[0].offset == 7 and fits[0].slope == pytest.approx(1.0)
