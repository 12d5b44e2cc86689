"""Shared fixtures: real loopback servers (DeepSeek emulators and the gateway itself)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from manxue.server.app import build_app
from manxue.settings import settings_from_dict
from manxue.testing.deepseek_emulator import DeepSeekEmulator
from manxue.testing.loopback import LoopbackServer
from tests.helpers import Gateway, Upstream, deployment, postgres_database, require_redis


def _start_upstream() -> Upstream:
    emu = DeepSeekEmulator()
    return Upstream(emu, LoopbackServer(emu.app()).start())


@pytest.fixture(scope="session", autouse=True)
def _data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep every test's database and journal out of the user's home."""
    old = os.environ.get("MANXUE_DATA_DIR")
    os.environ["MANXUE_DATA_DIR"] = str(tmp_path_factory.mktemp("manxue-data"))
    yield
    if old is None:
        os.environ.pop("MANXUE_DATA_DIR", None)
    else:
        os.environ["MANXUE_DATA_DIR"] = old


@pytest.fixture(scope="session")
def _upstreams() -> Iterator[list[Upstream]]:
    ups = [_start_upstream() for _ in range(3)]
    yield ups
    for u in ups:
        u.server.stop()


@pytest.fixture
def upstreams(_upstreams: list[Upstream]) -> list[Upstream]:
    """Three DeepSeek-like upstreams, reset for each test."""
    for u in _upstreams:
        u.emu.reset()
    return _upstreams


@pytest.fixture
def upstream(upstreams: list[Upstream]) -> Upstream:
    return upstreams[0]


@pytest.fixture
def make_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Gateway]]:
    started: list[LoopbackServer] = []

    def make(deployments: list[dict[str, Any]], router: dict[str, Any] | None = None,
             server: dict[str, Any] | None = None, **top: Any) -> Gateway:
        top.setdefault("data_dir", str(tmp_path_factory.mktemp("gw")))
        settings = settings_from_dict({"deployments": deployments, "router": router or {},
                                       "server": server or {}, **top})
        srv = LoopbackServer(build_app(settings)).start()
        started.append(srv)
        return Gateway(srv)

    yield make
    for s in started:
        s.stop()


@pytest.fixture
def gateway(make_gateway: Callable[..., Gateway], upstream: Upstream) -> Gateway:
    """A gateway with one deployment of `deepseek-chat` on the first upstream."""
    return make_gateway([deployment(upstream, "primary")])


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A new, empty database on the machine's PostgreSQL for one test, dropped afterwards.
    Without PostgreSQL the test fails and says what to start (never skips)."""
    with postgres_database() as url:
        yield url


@pytest.fixture
def redis_url() -> str:
    """The machine's Redis; without it the test fails and says what to start (never skips)."""
    return require_redis()
