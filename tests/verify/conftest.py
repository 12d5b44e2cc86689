"""The verifier's test bench (manxue.verify.testbench), started once per session.

One gateway serves, through the embedded engine: `reference` and `honest` (SmolLM2-135M-
Instruct, the same file), `requant` (the same weights requantized to Q2_K into a temporary
directory) and `gemma` (Gemma-3-270M). A proxy pads the honest model's usage by PAD tokens;
three stand-ins count usage with the DeepSeek, Qwen2.5 and Llama-3 tokenizers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from manxue.engine.default_model import default_model_path
from manxue.server.app import build_app
from manxue.server.routes import verify as verify_routes
from manxue.settings import settings_from_dict
from manxue.testing.loopback import LoopbackServer
from manxue.verify import AuditConfig, run_audit
from manxue.verify import testbench as tb

T = TypeVar("T")
CLAIM = "smollm2-135m-instruct"
PAD = 16


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@dataclass
class Bench:
    gateway: LoopbackServer
    padding: LoopbackServer
    standins: dict[str, LoopbackServer]

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
    work = tmp_path_factory.mktemp("verify-bench")
    smol = default_model_path()
    q2k = tb.requantize(smol, work / "smollm2-q2_k.gguf")
    settings = settings_from_dict({"deployments": tb.bench_deployments(smol, q2k, tb.gemma_path()),
                                   "data_dir": str(work)})
    app = build_app(settings)
    verify_routes.add_routes(app)
    gateway = LoopbackServer(app).start()
    padding = LoopbackServer(tb.padding_proxy(gateway.url, PAD)).start()
    standins = {f: LoopbackServer(tb.usage_standin(f, reasoning=True)).start()
                for f in ("deepseek", "qwen2.5", "llama3")}
    yield Bench(gateway, padding, standins)
    for s in [*standins.values(), padding, gateway]:
        s.stop()


def check(result: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in result["checks"] if c["name"] == name)
