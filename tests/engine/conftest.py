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
