"""Fixtures for the engine tests: the shipped SmolLM2 model, one shared provider, small engines."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from manxue.engine.default_model import default_model_path
from manxue.engine.engine import Engine
from manxue.engine.options import EngineOptions
from manxue.providers.local import LocalProvider
from manxue.settings import DeploymentSettings

T = TypeVar("T")
MODEL = "smollm2-local"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def chat(content: str, *, system: str | None = "You are a helpful assistant.", **extra: Any
         ) -> dict[str, Any]:
    messages = [{"role": "user", "content": content}]
    if system is not None:
        messages.insert(0, {"role": "system", "content": system})
    return {"model": MODEL, "messages": messages, **extra}


def settings(**extra: Any) -> DeploymentSettings:
    return DeploymentSettings(name="local-test", model=MODEL, kind="local", **extra)


@pytest.fixture(scope="session")
def model_path() -> Path:
    return default_model_path()


@pytest.fixture(scope="session")
def provider(model_path: Path) -> Iterator[LocalProvider]:
    """The process's shared engine for the shipped model, default options."""
    p = LocalProvider(settings(path=str(model_path)))
    yield p
    run(p.close())


@pytest.fixture
def make_provider(model_path: Path) -> Iterator[Callable[..., LocalProvider]]:
    """A provider over its own small engine, built with the given engine options."""
    made: list[LocalProvider] = []

    def make(**options: Any) -> LocalProvider:
        options.setdefault("n_ctx", 2048)
        options.setdefault("n_parallel", 2)
        engine = Engine(model_path, EngineOptions(**options))
        p = LocalProvider(settings(path=str(model_path)), engine=engine)
        made.append(p)
        return p

    yield make
    for p in made:
        run(p.close())


def smollm2_copy(out: Path, *metadata: str) -> Path:
    """A copy of the shipped SmolLM2 GGUF with new metadata (gguf's gguf_new_metadata options,
    e.g. `--chat-template-file F` or `--special-token-by-id fim_pre 5`)."""
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "gguf.scripts.gguf_new_metadata",
                    str(default_model_path()), str(out), *metadata, "--force"],
                   check=True, capture_output=True, timeout=120)
    return out


def local_gateway(model: str, path: Path, data_dir: Path, options: dict[str, Any]
                  ) -> Iterator[Any]:
    """A gateway serving one local deployment of `path` as `model`; yields an OpenAI client."""
    import openai

    from manxue.server.app import build_app
    from manxue.settings import settings_from_dict
    from manxue.testing.loopback import LoopbackServer

    config = settings_from_dict({"data_dir": str(data_dir), "deployments": [
        {"name": model, "model": model, "kind": "local", "path": str(path), "options": options}]})
    with LoopbackServer(build_app(config)) as srv:
        yield openai.OpenAI(base_url=srv.url + "/v1", api_key="none", max_retries=0, timeout=60)
