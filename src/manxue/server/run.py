"""Run the gateway: one process, or N worker processes sharing one port (SO_REUSEPORT)."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing as mp
import signal
import sys

from aiohttp import web

from manxue.server.app import build_app, build_state, describe
from manxue.settings import Settings

log = logging.getLogger("manxue")


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def serve(settings: Settings) -> None:
    """Block serving until SIGINT/SIGTERM."""
    workers = settings.server.workers
    if workers == 1:
        _serve_one(settings, reuse_port=False, announce=True)
        return
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_serve_one, args=(settings, True, i == 0), daemon=False)
             for i in range(workers)]
    for p in procs:
        p.start()

    def stop(*_: object) -> None:
        for p in procs:
            if p.is_alive():
                p.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for p in procs:
        p.join()


def _serve_one(settings: Settings, reuse_port: bool, announce: bool) -> None:
    configure_logging(settings.server.log_level)
    state = build_state(settings)
    app = build_app(settings, state)
    s = settings.server
    if announce:
        for line in describe(state):
            log.info("%s", line)
        workers = f" with {s.workers} workers" if s.workers > 1 else ""
        if s.workers > 1 and settings.billing.enabled and not settings.redis_url:
            log.warning("%d workers without redis_url: each worker enforces rate limits and "
                        "balances on its own; set redis_url to share them", s.workers)
        log.info("manxue listening on http://%s:%d%s (OpenAI API at /v1)", s.host, s.port,
                 workers)
    web.run_app(app, host=s.host, port=s.port, reuse_port=reuse_port or None,
                handler_cancellation=True, access_log=None, print=None, loop=new_loop(),
                shutdown_timeout=5)


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
