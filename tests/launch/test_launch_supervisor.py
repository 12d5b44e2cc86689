"""The supervisor over the stand-in engine: readiness, restarts with backoff, clean stops."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from manxue.engine_launch.commands import LaunchSpec, build_command, engine_url
from manxue.engine_launch.supervisor import EngineFailed, Supervisor, SupervisorConfig
from tests.launch.conftest import alive, fake_exec, free_port


def _config(tmp_path: Path, *extra: str, **kw: Any) -> SupervisorConfig:
    spec = LaunchSpec("vllm", "fake-model", port=free_port(), engine_exec=fake_exec(),
                      extra_args=extra)
    defaults: dict[str, Any] = dict(startup_timeout=15, poll_interval=0.1, grace=3.0,
                                    backoff_base=0.2, backoff_max=5.0, max_restarts=3)
    return SupervisorConfig(command=build_command(spec), url=engine_url(spec),
                            log_file=tmp_path / "engine.log", **(defaults | kw))


async def _until(cond: Callable[[], bool], limit: float = 15) -> None:
    deadline = time.monotonic() + limit
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def _drive(sup: Supervisor, body: Callable[[], Awaitable[None]]) -> None:
    """Run the supervisor while `body` runs, then stop it and wait for it."""
    task = asyncio.create_task(sup.run())
    try:
        await body()
    finally:
        sup.request_stop()
        await asyncio.wait_for(task, 20)


def test_starts_becomes_healthy_and_stops_with_its_workers(tmp_path: Path) -> None:
    worker_file = tmp_path / "worker.pid"
    cfg = _config(tmp_path, "--startup-delay", "0.5", "--spawn-worker", str(worker_file),
                  grace=1.0)
    events: list[str] = []

    async def on_ready() -> None:
        events.append("ready")

    async def on_down() -> None:
        events.append("down")

    sup = Supervisor(cfg, on_ready=on_ready, on_down=on_down)
    pids: dict[str, int] = {}

    async def body() -> None:
        await _until(lambda: events == ["ready"])
        assert sup.models == ["fake-model"]
        async with aiohttp.ClientSession() as http, http.get(cfg.url + "/health") as resp:
            assert resp.status == 200
        assert sup.pid is not None
        pids["server"] = sup.pid
        pids["worker"] = int(worker_file.read_text())
        assert alive(pids["server"]) and alive(pids["worker"])

    asyncio.run(_drive(sup, body))
    assert events == ["ready", "down"]
    # the worker ignores SIGTERM: it is SIGKILLed after the grace period, with nothing left over
    assert not alive(pids["server"]) and not alive(pids["worker"])
    log = cfg.log_file.read_text()
    assert "==== manxue: start #1" in log and "fake engine start #1" in log


def test_restarts_after_a_crash_with_exponential_backoff(tmp_path: Path) -> None:
    state = tmp_path / "starts"
    cfg = _config(tmp_path, "--crash-after", "0.2", "--crash-times", "2", "--state-file", str(state))
    ready: list[float] = []

    async def on_ready() -> None:
        ready.append(time.monotonic())

    sup = Supervisor(cfg, on_ready=on_ready)

    async def body() -> None:
        await _until(lambda: len(ready) == 3)
        await asyncio.sleep(0.5)  # the third start does not crash

    asyncio.run(_drive(sup, body))
    assert sup.starts == 3 and sup.restarts == 2
    assert sup.backoffs == [0.2, 0.4]
    assert ready[2] - ready[1] > ready[1] - ready[0] - 0.1  # waits grew
    assert state.read_text() == "3"


def test_gives_up_after_max_restarts(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "--crash-after", "0", max_restarts=1, backoff_base=0.05)
    sup = Supervisor(cfg)
    with pytest.raises(EngineFailed, match="died 2 times in a row") as info:
        asyncio.run(sup.run())
    assert "crashing" in str(info.value)  # the log's last lines are in the message
    assert sup.starts == 2
    assert sup.pid is not None and not alive(sup.pid)


def test_engine_that_never_gets_ready_times_out(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "--startup-delay", "60", startup_timeout=1.5)
    sup = Supervisor(cfg)
    with pytest.raises(EngineFailed, match="not ready after 2 s"):
        asyncio.run(sup.run())
    assert sup.pid is not None and not alive(sup.pid)


def test_sigterm_is_followed_by_sigkill_after_the_grace_period(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "--ignore-sigterm", grace=0.5)
    sup = Supervisor(cfg)

    async def body() -> None:
        await _until(lambda: bool(sup.models))

    t0 = time.monotonic()
    asyncio.run(_drive(sup, body))
    assert sup.proc is not None and sup.proc.returncode == -9
    assert time.monotonic() - t0 < 10
    assert sup.pid is not None and not alive(sup.pid)


def test_missing_executable_is_a_clear_error(tmp_path: Path) -> None:
    cfg = SupervisorConfig(command=["/nonexistent/python", "-m", "vllm"], url="http://127.0.0.1:9",
                           log_file=tmp_path / "e.log")
    with pytest.raises(EngineFailed, match="cannot start '/nonexistent/python'"):
        asyncio.run(Supervisor(cfg).run())


def test_kill_now_does_not_wait_for_the_grace_period(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "--ignore-sigterm", grace=30)
    sup = Supervisor(cfg)

    async def body() -> None:
        await _until(lambda: bool(sup.models))
        sup.kill_now()  # what a second Ctrl-C does

    t0 = time.monotonic()
    asyncio.run(_drive(sup, body))
    assert time.monotonic() - t0 < 10
    assert sup.pid is not None and not alive(sup.pid)
