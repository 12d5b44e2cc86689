"""Run the gateway: one process, or N worker processes sharing one port (SO_REUSEPORT).

Each process runs its application on a uvloop loop with an `AppRunner` and a `TCPSite`, stops
gracefully on SIGINT or SIGTERM (in-flight requests get `SHUTDOWN_TIMEOUT` seconds) and says
"listening" only once its socket is bound. A port it cannot bind is one error line
(`CannotListen`), not a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import multiprocessing as mp
import signal
import socket
import sys
from collections.abc import AsyncIterator
from multiprocessing.connection import wait as wait_for_exit
from typing import Any

from aiohttp import web

from manxue.errors import ConfigError, InvalidRequest, ManxueError
from manxue.server.app import build_app, build_state, describe
from manxue.server.client_address import is_loopback_host
from manxue.server.state import STATE_KEY
from manxue.settings import Settings

log = logging.getLogger("manxue")

SHUTDOWN_TIMEOUT = 5.0
# aiohttp has no separate header-read timeout: its keep-alive timer starts when a connection
# opens and closes it while no complete request head has arrived (between requests, too), so
# this bounds both a client that trickles its headers and an idle keep-alive connection. It is
# longer than the idle timeouts reverse proxies use for upstream connections (nginx 60 s),
# which must close first.
HEADER_TIMEOUT = 75.0


class CannotListen(Exception):
    """The gateway could not bind its address; the message says why and what to do."""


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def check_exposure(settings: Settings) -> None:
    """Refuse to serve a network address with no authentication at all, unless told to.

    With `[billing] enabled = false` no request is authenticated: on a loopback address that
    is the operator's own machine; on any other address it is whoever reaches the port.
    """
    server = settings.server
    if settings.billing.enabled or server.insecure_open or is_loopback_host(server.host):
        return
    raise ConfigError(
        f"refusing to serve {server.host!r} with [billing] enabled = false: anyone who reaches "
        "the port could use every model without a key. Enable billing and create a key "
        "(`manxue keys create --tenant NAME`), bind 127.0.0.1 (--host 127.0.0.1), or pass "
        "--insecure-open (server.insecure_open = true) if only trusted clients can reach it")


def serve(settings: Settings) -> int:
    """Block serving until SIGINT/SIGTERM; the exit status (0, or a failed worker's).

    Raises ConfigError for a configuration it will not serve and CannotListen for an address
    it cannot bind."""
    check_exposure(settings)
    s = settings.server
    if s.workers == 1:
        _serve_one(settings, reuse_port=False, announce=True)
        return 0
    if s.port == 0:
        raise ConfigError("port 0 (any free port) gives each worker a port of its own: give "
                          "--port, or run --workers 1")
    _probe(s.host, s.port)  # one error line here rather than one per worker
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(settings, i == 0), daemon=False)
             for i in range(s.workers)]
    for p in procs:
        p.start()
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True
        for p in procs:
            if p.is_alive():
                p.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    status = 0
    running = list(procs)
    while running:
        wait_for_exit([p.sentinel for p in running])
        for p in [p for p in running if not p.is_alive()]:
            running.remove(p)
            p.join()
            if not stopping and p.exitcode != 0:  # a worker failed: stop the others
                status = p.exitcode if p.exitcode and p.exitcode > 0 else 1
                stop()
    return status


def _worker(settings: Settings, announce: bool) -> None:
    """One worker process: its errors as one line on stderr and an exit status."""
    try:
        _serve_one(settings, reuse_port=True, announce=announce)
    except (ConfigError, CannotListen) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2 if isinstance(exc, ConfigError) else 1)


def tune_gc() -> None:
    """Keep the cyclic garbage collector off the request path: what start-up built (modules,
    the app, the model catalogs) is frozen out of every collection, and the youngest
    generation is collected every 20,000 allocations instead of 700. Requests make few
    reference cycles; a relay allocates thousands of short-lived objects a second, and each
    young collection used to walk them all."""
    gc.collect()
    gc.freeze()
    _, g1, g2 = gc.get_threshold()
    gc.set_threshold(20_000, g1, g2)


def _serve_one(settings: Settings, reuse_port: bool, announce: bool) -> None:
    with contextlib.suppress(KeyboardInterrupt):  # a Ctrl-C before the loop's handlers exist
        _serve_one_until_stopped(settings, reuse_port, announce)


def _serve_one_until_stopped(settings: Settings, reuse_port: bool, announce: bool) -> None:
    configure_logging(settings.server.log_level)
    state = build_state(settings)
    app = build_app(settings, state)
    s = settings.server
    if announce:
        for line in describe(state):
            log.info("%s", line)
        if s.workers > 1 and settings.billing.enabled and not settings.redis_url:
            log.warning("%d workers without redis_url: each worker enforces rate limits and "
                        "balances on its own; set redis_url to share them", s.workers)
        if not settings.billing.enabled and not is_loopback_host(s.host):
            log.warning("INSECURE: serving %s with no authentication ([billing] enabled = false, "
                        "--insecure-open): anyone who can reach this port can use every model. "
                        "Enable billing and create keys, or bind 127.0.0.1", s.host)
    tune_gc()
    loop = new_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(_run(app, settings, reuse_port, announce))
    finally:
        _close_loop(loop)


async def _run(app: web.Application, settings: Settings, reuse_port: bool, announce: bool) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    s = settings.server
    async with serving(app, s.host, s.port, reuse_port=reuse_port) as port:
        if announce:
            workers = f" with {s.workers} workers" if s.workers > 1 else ""
            log.info("manxue listening on %s%s (OpenAI API at /v1)", url(s.host, port), workers)
        await stop.wait()
        drain = settings.server.drain_seconds
        if drain > 0:
            app[STATE_KEY].draining = True
            log.info("draining: /ready answers 503 for %g s, then the port closes", drain)
            await asyncio.sleep(drain)
    log.info("manxue stopped")


@contextlib.asynccontextmanager
async def serving(app: web.Application, host: str, port: int, *, reuse_port: bool = False,
                  keepalive_timeout: float = HEADER_TIMEOUT) -> AsyncIterator[int]:
    """Serve `app` on host:port while the block runs; yields the port bound (for port 0).

    Raises CannotListen when the address cannot be bound. On leaving, the socket closes, idle
    connections close, requests in flight get SHUTDOWN_TIMEOUT seconds, then the
    application's shutdown and cleanup hooks run."""
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None,
                           shutdown_timeout=SHUTDOWN_TIMEOUT)
    await runner.setup()  # the application's start-up hooks
    try:
        base = runner.server
        assert base is not None  # set up above
        server = JsonErrorServer(base.request_handler, request_factory=base.request_factory,
                                 handler_cancellation=True, access_log=None,
                                 keepalive_timeout=keepalive_timeout)
        front = web.ServerRunner(server, shutdown_timeout=SHUTDOWN_TIMEOUT)
        await front.setup()
        try:
            site = web.TCPSite(front, host or None, port, reuse_port=reuse_port or None)
            try:
                await site.start()
            except OSError as exc:
                raise CannotListen(_cannot_listen(host, port, exc)) from None
            yield site.port
        finally:
            await front.cleanup()  # stop listening, let requests in flight finish
    finally:
        await runner.cleanup()


class JsonErrorServer(web.Server):
    """aiohttp's low-level server, answering requests it cannot parse in the OpenAI error
    shape (see `JsonErrorHandler`)."""

    def __init__(self, handler: Any, *, request_factory: Any, handler_cancellation: bool,
                 **handler_args: Any) -> None:
        loop = asyncio.get_running_loop()
        super().__init__(handler, request_factory=request_factory,
                         handler_cancellation=handler_cancellation, loop=loop, **handler_args)
        self._manxue_loop = loop
        self._manxue_handler_args = handler_args

    def __call__(self) -> web.RequestHandler:
        return JsonErrorHandler(self, loop=self._manxue_loop, **self._manxue_handler_args)


class JsonErrorHandler(web.RequestHandler):
    """aiohttp's connection handler; the answers it makes itself, before any route runs (a
    malformed request line, header or chunked body, a header line too long), are OpenAI
    error JSON instead of text, and a malformed request is logged as one debug line (the
    internet sends many), not a traceback."""

    def handle_error(self, request: web.BaseRequest, status: int = 500,
                     exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if request.writer.output_size > 0:  # as aiohttp: too late for another answer
            raise ConnectionError("Response is sent already, cannot send another response "
                                  "with the error message")
        err: ManxueError
        if status >= 500:
            self.log_exception("Error handling request from %s", request.remote, exc_info=exc)
            err = ManxueError("internal error while handling the request; the gateway logged it")
        else:
            lines = (message or "").strip().splitlines()
            # aiohttp's first line names the problem; what follows quotes the client's bytes
            reason = lines[0].partition(":")[0].strip()[:200] if lines else ""
            self.logger.debug("malformed request from %s: %s", request.remote, reason)
            err = InvalidRequest(f"malformed HTTP request{f' ({reason})' if reason else ''}; "
                                 "send a valid HTTP/1.1 request", code="bad_http_request")
        err.status = status
        resp = web.Response(status=status, body=err.to_json(), content_type="application/json")
        resp.force_close()
        return resp


def url(host: str, port: int) -> str:
    """http://host:port, with an IPv6 address in brackets and a wildcard host as given."""
    shown = f"[{host}]" if ":" in host else (host or "0.0.0.0")
    return f"http://{shown}:{port}"


def _cannot_listen(host: str, port: int, exc: OSError) -> str:
    where = f"cannot listen on {host or '*'}:{port}"
    if isinstance(exc, socket.gaierror):
        return f"{where}: cannot resolve {host!r}; give an IP address with --host"
    hints = {
        errno.EADDRINUSE: "address already in use; pick another with --port, or stop the "
                          "program using it",
        errno.EACCES: "permission denied; ports below 1024 need privileges: pick a port from "
                      "1024 up with --port",
        errno.EADDRNOTAVAIL: "this machine has no such address; bind 127.0.0.1, 0.0.0.0 or "
                             "one of its own addresses with --host",
    }
    reason = hints.get(exc.errno or 0) or (exc.strerror or str(exc)).lower()
    return f"{where}: {reason}"


def _probe(host: str, port: int) -> None:
    """Raise CannotListen unless host:port can be bound the way the workers will bind it."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise CannotListen(_cannot_listen(host, port, exc)) from None
    for family, kind, proto, _, address in infos:
        try:
            sock = socket.socket(family, kind, proto)
        except OSError:  # e.g. no IPv6 here: the workers skip that family as well
            continue
        with sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if hasattr(socket, "SO_REUSEPORT"):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                raise CannotListen(_cannot_listen(host, port, exc)) from None


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is left on the loop, let it finish, close the loop."""
    try:
        tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for t in tasks:
            t.cancel()
        if tasks:
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
