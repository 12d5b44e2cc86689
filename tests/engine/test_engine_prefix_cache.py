"""Prefix KV reuse: reported hits are real, and saved prefixes survive an engine restart."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from manxue.providers.local import LocalProvider
from tests.engine.conftest import chat, run

SYSTEM = ("You are a meticulous assistant for a shipping company. " * 25).strip()


def test_shared_system_prompt_is_reused(provider: LocalProvider) -> None:
    first = run(provider.complete(chat("Where is my parcel?", system=SYSTEM, max_tokens=4))).data
    second = run(provider.complete(chat("How much is postage?", system=SYSTEM, max_tokens=4))).data
    u1, u2 = first["usage"], second["usage"]
    for u in (u1, u2):
        assert u["prompt_tokens"] == u["prompt_cache_hit_tokens"] + u["prompt_cache_miss_tokens"]
        assert u["prompt_tokens_details"]["cached_tokens"] == u["prompt_cache_hit_tokens"]
    assert u2["prompt_cache_hit_tokens"] >= 250  # the whole system block
    assert u2["prompt_cache_miss_tokens"] <= 20
    again = run(provider.complete(chat("Where is my parcel?", system=SYSTEM, max_tokens=4))).data
    assert again["usage"]["prompt_cache_hit_tokens"] == again["usage"]["prompt_tokens"] - 1


def test_saved_prefixes_survive_restart(make_provider: Any, tmp_path: Path) -> None:
    body = chat("Where is my parcel?", system=SYSTEM, temperature=0, max_tokens=6)
    p1 = make_provider(prefix_cache_dir=str(tmp_path))
    cold = run(p1.complete(body)).data
    assert cold["usage"]["prompt_cache_hit_tokens"] == 0
    run(p1.close())
    assert list(tmp_path.rglob("*.kv"))
    p2 = make_provider(prefix_cache_dir=str(tmp_path))
    warm = run(p2.complete(body)).data
    assert warm["usage"]["prompt_cache_hit_tokens"] == warm["usage"]["prompt_tokens"] - 1
    # the restored KV is bit-identical, so the answer is the same as before the restart
    assert warm["choices"][0]["message"]["content"] == cold["choices"][0]["message"]["content"]


def test_concurrent_requests_compute_a_shared_prefix_once(provider: LocalProvider) -> None:
    system = "Fresh notes for this test only. " + SYSTEM

    async def three() -> list[Any]:
        return list(await asyncio.gather(*(
            provider.complete(chat(q, system=system, max_tokens=4))
            for q in ("Where is my parcel?", "How much is postage?", "Can I return it?"))))

    before = provider.stats()["prompt_tokens_computed"]
    done = run(three())
    computed = provider.stats()["prompt_tokens_computed"] - before
    usages = [d.data["usage"] for d in done]
    for u in usages:
        assert u["prompt_tokens"] == u["prompt_cache_hit_tokens"] + u["prompt_cache_miss_tokens"]
    assert sorted(u["prompt_cache_hit_tokens"] >= 250 for u in usages) == [False, True, True]
    assert computed == sum(u["prompt_cache_miss_tokens"] for u in usages)
    assert computed < 1.5 * usages[0]["prompt_tokens"]


def test_full_kv_cache_swaps_a_sequence_out_and_back(make_provider: Any) -> None:
    p = make_provider(n_ctx=256, n_parallel=3)
    no_end = {"0": -100, "2": -100}

    async def three() -> list[Any]:
        return list(await asyncio.gather(*(
            p.complete(chat(f"Count to {n}.", max_tokens=100, seed=n, logit_bias=no_end))
            for n in (10, 20, 30))))

    done = run(three())
    for d in done:
        assert d.data["usage"]["completion_tokens"] == 100
        assert d.data["choices"][0]["finish_reason"] == "length"
    stats = p.stats()
    assert stats["preempted"] >= 1 and stats["running"] == 0
