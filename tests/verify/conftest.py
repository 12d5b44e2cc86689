"""The verifier's test bench (manxue.testing.verify_bench), started once per session.

One gateway serves, through the embedded engine: `reference` and `honest` (SmolLM2-135M-
Instruct, the same file), `requant` (the same weights requantized to Q2_K into a temporary
directory) and `gemma` (Gemma-3-270M). A proxy pads the honest model's usage by PAD tokens,
another hides logprobs; three stand-ins count usage with the DeepSeek, Qwen2.5 and Llama-3
tokenizers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from manxue.testing import verify_bench as tb
from manxue.verify import AuditConfig, run_audit

T = TypeVar("T")
CLAIM = "smollm2-135m-instruct"
PAD = 16


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


class Bench(tb.Bench):
    def audit(self, model: str, *, base_url: str | None = None, reference: bool = True,
              **kw: Any) -> dict[str, Any]:
        kw.setdefault("claim", CLAIM)
        kw.setdefault("seed", 1)
        if reference:
            kw.setdefault("reference_url", self.gateway.url)
            kw.setdefault("reference_model", "reference")
        cfg = AuditConfig(base_url=base_url or self.gateway.url, model=model, **kw)
        return run(run_audit(cfg))


@pytest.fixture(scope="session")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    logging.getLogger("manxue.engine.llama").setLevel(logging.ERROR)
    parts = tb.start_bench(tmp_path_factory.mktemp("verify-bench"), pad=PAD)
    bench = Bench(parts.gateway, parts.padding, parts.nologprobs, parts.standins, parts.mixed,
                  parts.aware)
    yield bench
    bench.stop()


def check(result: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in result["checks"] if c["name"] == name)
