"""The smallest useful relay (aiohttp server + aiohttp client, no validation, routing or
metrics): the reference point for what any Python gateway can do on this machine.

    python benchmarks/bare_relay.py UPSTREAM_URL PORT
"""

from __future__ import annotations

import sys

import aiohttp
from aiohttp import web

from manxue.server.run import new_loop

SESSION = web.AppKey("session", aiohttp.ClientSession)


async def relay(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    async with request.app[SESSION].post(sys.argv[1] + request.path, data=body,
                                         headers={"Content-Type": "application/json"}) as up:
        if up.headers.get("Content-Type", "").startswith("text/event-stream"):
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            async for chunk in up.content.iter_any():
                await resp.write(chunk)
            return resp
        return web.Response(body=await up.read(), status=up.status, content_type="application/json")


async def make_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", relay)

    async def start(app: web.Application) -> None:
        app[SESSION] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def stop(app: web.Application) -> None:
        await app[SESSION].close()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    return app


if __name__ == "__main__":
    web.run_app(make_app(), host="127.0.0.1", port=int(sys.argv[2]), access_log=None, print=None,
                loop=new_loop())
