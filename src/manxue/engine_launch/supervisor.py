"""Run an engine server as a supervised child: health checks, restarts, clean shutdown.

The engine starts in a new process group (its own session), so one signal reaches the server
and every worker it forked (vLLM and SGLang fork one per GPU), and so Ctrl-C in the terminal
reaches only the launcher, which then shuts the engine down in order: SIGTERM to the group,
SIGKILL to whatever is left after the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import os
import shlex
import signal
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp

log = logging.getLogger("manxue.engine_launch")

Hook = Callable[[], Awaitable[None]]


class EngineFailed(Exception):
    """The engine could not be brought up, or died more often than allowed."""


@dataclass(frozen=True, slots=True)
class SupervisorConfig:
    command: Sequence[str]
    url: str
    """The engine's root URL: GET {url}/health, then GET {url}/v1/models."""
    log_file: Path
    startup_timeout: float = 1800.0
    max_restarts: int = 5
    backoff_base: float = 2.0
    backoff_max: float = 60.0
    stable_after: float = 300.0
    """A run healthy this long resets the restart count."""
    grace: float = 30.0
    poll_interval: float = 1.0
    env: Mapping[str, str] | None = None
    die_with_parent: bool = True


class Reporter:
    """Where the supervisor says what it is doing; the CLI shows it with rich."""

    def waiting(self, text: str) -> None:
        log.debug("%s", text)

    def info(self, text: str) -> None:
        log.info("%s", text)

    def warning(self, text: str) -> None:
        log.warning("%s", text)

    def done_waiting(self) -> None:
        """The readiness wait is over (ready, exited or stopped)."""


@dataclass
class Supervisor:
    config: SupervisorConfig
    on_ready: Hook | None = None
    """Awaited each time the engine has become healthy (register it)."""
    on_down: Hook | None = None
    """Awaited when a healthy engine dies or is about to be stopped (deregister it)."""
    reporter: Reporter = field(default_factory=Reporter)
    starts: int = 0
    restarts: int = 0
    backoffs: list[float] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    proc: asyncio.subprocess.Process | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _log: IO[bytes] | None = None
    _up: bool = False

    # ---- control ------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Ask `run` to shut the engine down and return (safe from a signal handler)."""
        self._stop.set()

    def kill_now(self) -> None:
        """SIGKILL the engine's whole process group at once (a second Ctrl-C)."""
        self._stop.set()
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    async def run(self) -> None:
        """Start the engine and keep it up until `request_stop`; raises EngineFailed."""
        cfg = self.config
        try:
            while not self.stopping:
                await self._spawn()
                started = time.monotonic()
                if not await self._wait_ready():
                    code = self._returncode()
                    if self.stopping:
                        break
                    self.reporter.warning(f"engine exited with code {code} before it was ready")
                else:
                    ready_at = time.monotonic()
                    self.reporter.info(
                        f"engine ready after {ready_at - started:.1f} s "
                        f"(pid {self.pid}, models: {', '.join(self.models) or '-'})")
                    self._up = True
                    if self.on_ready is not None:
                        await self.on_ready()
                    await self._wait_exit_or_stop()
                    if self.stopping:
                        break
                    code = self._returncode()
                    self.reporter.warning(f"engine exited with code {code} after "
                                          f"{time.monotonic() - ready_at:.1f} s")
                    await self._went_down()
                    if time.monotonic() - ready_at >= cfg.stable_after:
                        self.restarts = 0
                await self._kill_group(signal.SIGKILL)  # workers the server left behind
                self.restarts += 1
                if self.restarts > cfg.max_restarts:
                    raise EngineFailed(
                        f"engine died {self.restarts} times in a row (limit --max-restarts "
                        f"{cfg.max_restarts}); last lines of {cfg.log_file}:\n"
                        + tail(cfg.log_file))
                delay = self.backoff(self.restarts)
                self.backoffs.append(delay)
                self.reporter.info(f"restart {self.restarts}/{cfg.max_restarts} in {delay:.1f} s")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
        finally:
            await self._went_down()
            await self.terminate()

    def backoff(self, restart: int) -> float:
        cfg = self.config
        return float(min(cfg.backoff_max, cfg.backoff_base * 2 ** (restart - 1)))

    # ---- process ------------------------------------------------------------------------
    async def _spawn(self) -> None:
        cfg = self.config
        self.starts += 1
        cfg.log_file.parent.mkdir(parents=True, exist_ok=True)
        self._close_log()
        self._log = cfg.log_file.open("ab", buffering=0)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        self._log.write(f"\n==== manxue: start #{self.starts} at {stamp}: "
                        f"{shlex.join(cfg.command)}\n".encode())
        env = dict(os.environ if cfg.env is None else cfg.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *cfg.command, stdin=asyncio.subprocess.DEVNULL, stdout=self._log,
                stderr=asyncio.subprocess.STDOUT, env=env, start_new_session=True,
                preexec_fn=_die_with_parent if cfg.die_with_parent and _PRCTL else None)
        except OSError as exc:
            self._close_log()
            raise EngineFailed(f"cannot start {cfg.command[0]!r}: {exc.strerror or exc}") from None
        self.models = []
        self.reporter.info(f"engine started (pid {self.proc.pid}); log: {cfg.log_file}")

    def _returncode(self) -> int | None:
        return self.proc.returncode if self.proc is not None else None

    async def _wait_exit_or_stop(self) -> None:
        assert self.proc is not None
        exited = asyncio.ensure_future(self.proc.wait())
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({exited, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (exited, stop):
                t.cancel()
            await asyncio.gather(exited, stop, return_exceptions=True)

    async def _wait_ready(self) -> bool:
        """Poll /health, then /v1/models; False when the engine exits or a stop is asked."""
        cfg = self.config
        assert self.proc is not None
        t0 = time.monotonic()
        deadline = t0 + cfg.startup_timeout
        url = cfg.url.rstrip("/")
        timeout = aiohttp.ClientTimeout(total=max(2.0, cfg.poll_interval * 2))
        async with aiohttp.ClientSession(timeout=timeout) as http:
            try:
                return await self._poll(http, url, t0, deadline)
            finally:
                self.reporter.done_waiting()

    async def _poll(self, http: aiohttp.ClientSession, url: str, t0: float,
                    deadline: float) -> bool:
        cfg = self.config
        assert self.proc is not None
        while True:
            if self.proc.returncode is not None or self.stopping:
                return False
            waited = time.monotonic() - t0
            phase = await self._probe(http, url)
            if phase is None:
                return True
            self.reporter.waiting(f"{phase} ({waited:.0f} s)")
            if time.monotonic() >= deadline:
                await self.terminate()
                raise EngineFailed(
                    f"engine not ready after {cfg.startup_timeout:.0f} s ({phase}); raise "
                    f"--startup-timeout for big models. Last lines of {cfg.log_file}:\n"
                    + tail(cfg.log_file))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), cfg.poll_interval)

    async def _probe(self, http: aiohttp.ClientSession, url: str) -> str | None:
        """None once ready, else what is being waited for."""
        try:
            async with http.get(url + "/health") as resp:
                if resp.status != 200:
                    return f"loading: GET /health answers {resp.status}"
            async with http.get(url + "/v1/models") as resp:
                if resp.status != 200:
                    return f"GET /v1/models answers {resp.status}"
                body: Any = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return "waiting for the engine to listen"
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list) or not data:
            return "GET /v1/models lists no model yet"
        self.models = [str(m.get("id")) for m in data if isinstance(m, dict)]
        return None

    async def _went_down(self) -> None:
        if self._up:
            self._up = False
            if self.on_down is not None:
                try:
                    await self.on_down()
                except Exception as exc:
                    self.reporter.warning(f"while taking the engine down: {exc}")

    async def terminate(self) -> None:
        """SIGTERM the whole group, SIGKILL what is left after the grace period."""
        proc = self.proc
        if proc is None:
            return
        grace = self.config.grace
        if proc.returncode is None:
            self.reporter.info(f"stopping the engine (pid {proc.pid}, grace {grace:g} s)")
        await self._kill_group(signal.SIGTERM)
        deadline = time.monotonic() + grace
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), grace)
        gone = await _group_gone(proc.pid, deadline - time.monotonic())
        if proc.returncode is None or not gone:
            self.reporter.warning(f"engine still running after {grace:g} s; killing it")
            await self._kill_group(signal.SIGKILL)
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:  # stuck in the kernel (a GPU driver call, say)
            self.reporter.warning(f"engine (pid {proc.pid}) has not exited 30 s after SIGKILL")
        self._close_log()

    async def _kill_group(self, sig: signal.Signals) -> None:
        proc = self.proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        if sig == signal.SIGKILL:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 5)
            await _group_gone(proc.pid, 2.0)  # the rest of the group goes shortly

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


async def _group_gone(pgid: int, within: float) -> bool:
    """Wait up to `within` seconds for the group to have no live process left."""
    deadline = time.monotonic() + within
    while True:
        if not _group_alive(pgid):
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.05)


def _group_alive(pgid: int) -> bool:
    """Whether any live (not zombie) process is left in the process group."""
    if _PROC.is_dir():
        return bool(group_members(pgid))
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_PROC = Path("/proc")


def group_members(pgid: int) -> list[int]:
    """Live processes of a process group, read from /proc (Linux)."""
    out = []
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 2 and fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            out.append(int(entry.name))
    return out


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log file, indented, for error messages."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            last = deque(f.read().decode(errors="replace").splitlines(), maxlen=lines)
    except OSError:
        return "  (no log)"
    return "\n".join("  " + line for line in last) or "  (empty log)"


# Linux: have the kernel SIGKILL the engine server if the launcher itself is killed (-9).
_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    return libc.prctl


_PRCTL = _load_prctl()


def _die_with_parent() -> None:
    _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
