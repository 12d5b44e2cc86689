"""Protocol conformance against the DeepSeek emulator: reasoning is identity, the rest is API."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from manxue.testing.deepseek_emulator import Behavior
from manxue.verify import AuditConfig, run_audit
from tests.helpers import Gateway, Upstream, deployment
from tests.verify.conftest import check


def _audit(url: str, claim: str) -> dict[str, Any]:
    cfg = AuditConfig(base_url=url, model="deepseek-reasoner", claim=claim, checks=("protocol",),
                      seed=1)
    return asyncio.run(run_audit(cfg))


def test_reasoning_model_with_reasoning_conforms(upstream: Upstream,
                                                 make_gateway: Callable[..., Gateway]) -> None:
    upstream.emu.default = Behavior(reasoning="Let me think. The user wants OK.")
    gw = make_gateway([deployment(upstream, "r1", model="deepseek-reasoner")])
    r = _audit(gw.url, "deepseek-r1")
    proto = check(r, "protocol")
    assert proto["status"] == "pass", proto["evidence"]["items"]
    assert proto["requests"] == 4 and not proto["rejects_claim"]
    names = [i["name"] for i in proto["evidence"]["items"]]
    assert "answer: usage with cache hit/miss summing to prompt_tokens" in names
    assert r["posterior"] and next(iter(r["posterior"])) != "deepseek-v3"


def test_missing_reasoning_rejects_a_reasoning_claim(upstream: Upstream,
                                                     make_gateway: Callable[..., Gateway]) -> None:
    gw = make_gateway([deployment(upstream, "r1", model="deepseek-reasoner")])
    r = _audit(gw.url, "deepseek-r1")  # the emulator answers without reasoning_content
    proto = check(r, "protocol")
    assert proto["rejects_claim"] and r["verdict"] == "substituted"
    assert proto["p_value"] == 0.0
    assert "no reasoning_content" in proto["summary"]


def test_conformance_problems_are_reported_without_rejecting(upstream: Upstream) -> None:
    upstream.emu.default = Behavior(usage=False)
    r = _audit(upstream.url, "deepseek-v3")  # the bare emulator: no usage, no input checks
    proto = check(r, "protocol")
    assert proto["status"] == "fail" and not proto["rejects_claim"]
    failed = [i["name"] for i in proto["evidence"]["items"] if not i["ok"]]
    assert "answer: usage reported" in failed
    assert "empty messages → 400/422 with an error object" in failed
    assert r["verdict"] != "substituted"
