"""Run an aiohttp application on 127.0.0.1 in a background thread with its own event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from aiohttp import web

T = TypeVar("T")


class LoopbackServer:
    """`with LoopbackServer(app) as srv: srv.url` — a real server, stopped on exit."""

    def __init__(self, app: web.Application | Callable[[], web.Application], port: int = 0) -> None:
        self._app_or_factory = app
        self._port = port
        self.port = 0
        from manxue.server.run import new_loop

        self.loop = new_loop()  # the loop production runs on
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run a coroutine on the server's loop and wait for its result."""
        fut: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    def start(self) -> LoopbackServer:
        self._thread.start()
        self.call(self._start())
        return self

    async def _start(self) -> None:
        app = self._app_or_factory if isinstance(self._app_or_factory, web.Application) \
            else self._app_or_factory()
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self._port)
        await site.start()
        server: Any = site._server
        self.port = server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        if self._runner is not None:
            self.call(self._runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
