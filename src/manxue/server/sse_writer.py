"""An SSE response that can send keep-alive comments while the first token is awaited."""

from __future__ import annotations

import asyncio

from aiohttp import web

from manxue.protocol.sse import KEEPALIVE

SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


class SSEWriter:
    """Starts the response lazily; relays upstream keep-alives and sends its own every
    `interval` seconds until the first data event, so idle-timeout proxies keep the line open."""

    def __init__(self, request: web.Request, interval: float, headers: dict[str, str]) -> None:
        self.request = request
        self.response = web.StreamResponse(headers={**SSE_HEADERS, **headers})
        self._interval = interval
        self._timer: asyncio.TimerHandle | None = None
        self._pending: asyncio.Task[None] | None = None
        self._waiting = True

    @property
    def started(self) -> bool:
        return self.response.prepared

    def arm(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self._interval, self._tick)

    def _tick(self) -> None:
        if not self._waiting:
            return
        if self._pending is None or self._pending.done():
            self._pending = asyncio.get_running_loop().create_task(self.keepalive())
        self.arm()

    async def keepalive(self) -> None:
        if not self._waiting:
            return
        try:
            await self.start()
            await self.response.write(KEEPALIVE)
        except (ConnectionError, RuntimeError):
            pass  # the client left; the handler's own write will notice

    async def start(self) -> None:
        if not self.response.prepared:
            await self.response.prepare(self.request)

    async def stop_waiting(self) -> None:
        self._waiting = False
        if self._timer is not None:
            self._timer.cancel()
        if self._pending is not None and not self._pending.done():
            await asyncio.shield(self._pending)

    async def write(self, data: bytes) -> None:
        await self.response.write(data)
