"""Helpers shared by tests: handles on loopback servers, deployment entries, waiting for
background work, and the machine's PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import openai
import pytest

from manxue.testing.deepseek_emulator import DeepSeekEmulator
from manxue.testing.loopback import LoopbackServer


class Upstream:
    def __init__(self, emu: DeepSeekEmulator, server: LoopbackServer) -> None:
        self.emu = emu
        self.server = server
        self.url = server.url


class Gateway:
    def __init__(self, server: LoopbackServer) -> None:
        self.server = server
        self.url = server.url
        self.app = server._app_or_factory

    def client(self, **kw: Any) -> openai.OpenAI:
        kw.setdefault("max_retries", 0)
        kw.setdefault("timeout", 20)
        return openai.OpenAI(base_url=self.url + "/v1", api_key=kw.pop("api_key", "sk-test"), **kw)


def deployment(up: Upstream, name: str, model: str = "deepseek-chat", **kw: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"name": name, "model": model, "kind": "openai", "base_url": up.url,
                         "upstream_model": "deepseek-chat"}
    d.update(kw)
    return d




# ---- waiting for background work -------------------------------------------------------------
# A test that waits for something the server does in the background (a key reload, a ledger
# flush, an engine taking a request, a process coming up) polls for it instead of sleeping a
# fixed time: as fast as the machine allows, and patient when it is loaded. A sleep stays only
# where the passing of time is itself the behaviour under test (a slow upstream, a cooldown, a
# quiet window in which nothing more may happen).


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.02,
               what: str | None = None) -> None:
    """Return once `predicate()` is true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for "
                                 f"{what or getattr(predicate, '__name__', 'a condition')}")
        time.sleep(interval)


async def wait_until_async(predicate: Callable[[], object], limit: float = 10.0,
                           interval: float = 0.005, what: str | None = None) -> None:
    """`wait_until` inside an event loop (the loop keeps running while it waits); `limit` is
    the timeout in seconds."""
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {limit} s waiting for "
                                 f"{what or getattr(predicate, '__name__', 'a condition')}")
        await asyncio.sleep(interval)


# ---- the machine's PostgreSQL and Redis --------------------------------------------------------
# One policy for every test that needs them: the test fails (never skips) and says what to
# start. CI starts both (.ci/run); a developer without them sees why, instead of a green run
# that tested less.

POSTGRES_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/{name}"
REDIS_URL = "redis://127.0.0.1:6379/0"


def service_missing(service: str, exc: BaseException) -> NoReturn:
    start = {
        "PostgreSQL": "PostgreSQL on 127.0.0.1:5432 with trust auth for user postgres "
                      "(`pg_ctlcluster <version> main start`)",
        "Redis": "Redis on 127.0.0.1:6379 (`redis-server --daemonize yes --bind 127.0.0.1 "
                 "--port 6379`)",
    }[service]
    pytest.fail(f"{service} is needed by this test and did not answer ({exc}): start {start}, "
                "as .ci/run does", pytrace=False)


@contextmanager
def postgres_database(prefix: str = "manxue_test") -> Iterator[str]:
    """A new, empty, uniquely named database on the machine's PostgreSQL; dropped afterwards.
    Yields its URL."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(POSTGRES_ADMIN_DSN, autocommit=True, connect_timeout=5) as c:
            c.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        service_missing("PostgreSQL", exc)
    try:
        yield POSTGRES_URL.format(name=name)
    finally:
        with psycopg.connect(POSTGRES_ADMIN_DSN, autocommit=True, connect_timeout=5) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def require_redis(url: str = REDIS_URL) -> str:
    """`url` once its Redis answers a PING; else the test fails saying what to start."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        service_missing("Redis", exc)
    finally:
        client.close()
    return url


class UsageRecorder:
    """A UsageSink that keeps every Outcome a gateway settles (attach with `on`)."""

    def __init__(self) -> None:
        self.outcomes: list[Any] = []

    def record(self, outcome: Any) -> None:
        self.outcomes.append(outcome)

    @classmethod
    def on(cls, gw: Gateway) -> UsageRecorder:
        from manxue.server.state import STATE_KEY

        rec = cls()
        gw.app[STATE_KEY].chat.sinks.append(rec)
        return rec
