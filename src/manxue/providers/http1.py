"""A lean HTTP/1.1 client for one upstream origin: pooled keep-alive connections, one write
per request, responses parsed by llhttp (httptools), bodies read whole, by line or as they come.

The gateway's hot path spends most of its time talking to upstreams; a general-purpose client
does far more per request than a relay needs (see docs/benchmarks/gateway.md).
"""

from __future__ import annotations

import asyncio
import ssl
import zlib
from collections import deque
from typing import Any
from urllib.parse import urlsplit

import httptools

_HIGH_WATER = 1 << 20  # pause reading the socket above this many buffered bytes


class ConnectError(ConnectionError):
    """The connection could not be made (refused, unreachable, TLS failure)."""


class BrokenResponse(ConnectionError):
    """The connection broke, or the response was malformed, before the body ended."""


class TotalTimeout(TimeoutError):
    """The whole exchange ran past its total time limit."""


class _Conn(asyncio.Protocol):
    """One TCP (or TLS) connection; carries one exchange at a time."""

    def __init__(self, pool: Http1Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.resp: Http1Response | None = None
        self._headers: list[tuple[bytes, bytes]] = []

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(BrokenResponse(f"malformed response: {exc}"))
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(BrokenResponse("connection closed by the upstream"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        resp = self.resp
        if resp is None:
            return
        resp.status = self.parser.get_status_code()
        resp.headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in self._headers}
        self._headers = []
        enc = resp.headers.get("content-encoding", "identity")
        if enc in ("gzip", "deflate"):
            resp._decoder = zlib.decompressobj(zlib.MAX_WBITS | 32)
        if not resp._head.done():
            resp._head.set_result(None)

    def on_body(self, body: bytes) -> None:
        if self.resp is not None:
            self.resp._feed(body)

    def on_message_complete(self) -> None:
        resp = self.resp
        if resp is not None:
            resp._finish(self.parser.should_keep_alive())

    # helpers
    def _fail(self, exc: Exception) -> None:
        if self.resp is not None:
            self.resp._error(exc)

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def pause(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()


class Http1Response:
    """The status and headers of an answer, and its body as it arrives."""

    __slots__ = ("_buf", "_conn", "_decoder", "_done", "_exc", "_head", "_keep", "_paused",
                 "_timer", "_waiter", "headers", "status")

    def __init__(self, conn: _Conn, loop: asyncio.AbstractEventLoop) -> None:
        self._conn: _Conn | None = conn
        self._head: asyncio.Future[None] = loop.create_future()
        self._buf = bytearray()
        self._done = False
        self._keep = False
        self._exc: Exception | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._decoder: Any = None
        self._paused = False
        self._timer: asyncio.TimerHandle | None = None
        self.status = 0
        self.headers: dict[str, str] = {}

    # fed by the connection
    def _feed(self, data: bytes) -> None:
        if self._decoder is not None:
            data = self._decoder.decompress(data)
        self._buf += data
        if len(self._buf) > _HIGH_WATER and self._conn is not None and not self._paused:
            self._paused = True
            self._conn.pause()
        self._wake()

    def _finish(self, keep_alive: bool) -> None:
        if self._decoder is not None:
            self._buf += self._decoder.flush()
        self._done = True
        self._keep = keep_alive
        self._wake()

    def _error(self, exc: Exception) -> None:
        if self._done:
            return
        self._exc = exc
        if not self._head.done():
            self._head.set_exception(exc)
        self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def _wait(self) -> None:
        if self._paused and self._conn is not None:
            self._paused = False
            self._conn.resume()
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    # read by the caller
    async def read(self) -> bytes:
        """The whole (rest of the) body."""
        while not self._done:
            if self._exc is not None:
                raise self._exc
            await self._wait()
        data = bytes(self._buf)
        self._buf.clear()
        self.release()
        return data

    async def readany(self) -> bytes:
        """Whatever arrived next; b"" at the end of the body."""
        while not self._buf:
            if self._done:
                return b""
            if self._exc is not None:
                raise self._exc
            await self._wait()
        data = bytes(self._buf)
        self._buf.clear()
        return data

    async def readline(self) -> bytes:
        """The next line with its newline; b"" at the end of the body."""
        while True:
            i = self._buf.find(b"\n")
            if i >= 0:
                line = bytes(self._buf[: i + 1])
                del self._buf[: i + 1]
                return line
            if self._done:
                line = bytes(self._buf)
                self._buf.clear()
                return line
            if self._exc is not None:
                raise self._exc
            await self._wait()

    def release(self) -> None:
        """Give the connection back to the pool if the exchange ended cleanly, else close it."""
        conn, self._conn = self._conn, None
        if self._timer is not None:
            self._timer.cancel()
        if conn is None:
            return
        conn.resp = None
        if self._done and self._keep and not conn.closed:
            conn.pool._put(conn)
        else:
            conn.abort()

    close = release


class Http1Pool:
    """Keep-alive connections to one origin (scheme://host:port)."""

    def __init__(self, base_url: str, connect_timeout: float = 5.0, max_idle: int = 256) -> None:
        u = urlsplit(base_url)
        if u.scheme not in ("http", "https"):
            raise ValueError(f"unsupported URL scheme in {base_url!r}")
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.ssl: ssl.SSLContext | None = ssl.create_default_context() if u.scheme == "https" else None
        default_port = self.port == (443 if u.scheme == "https" else 80)
        self.host_header = self.host if default_port else f"{self.host}:{self.port}"
        self.base_path = u.path.rstrip("/")
        self.connect_timeout = connect_timeout
        self.max_idle = max_idle
        self._idle: deque[_Conn] = deque()

    def _put(self, conn: _Conn) -> None:
        if len(self._idle) < self.max_idle:
            self._idle.append(conn)
        else:
            conn.abort()

    async def _connect(self) -> _Conn:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, proto = await loop.create_connection(
                    lambda: _Conn(self), self.host, self.port, ssl=self.ssl,
                    server_hostname=self.host if self.ssl else None)
        except TimeoutError:
            raise ConnectError(f"connect timed out after {self.connect_timeout:g}s") from None
        except (OSError, ssl.SSLError) as exc:
            raise ConnectError(f"{type(exc).__name__}: {exc.strerror or exc}"
                               if isinstance(exc, OSError) else str(exc)) from None
        return proto

    def head(self, method: str, path: str, headers: dict[str, str], length: int) -> bytes:
        """The request line and headers, built once per request."""
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host_header}",
                 f"Content-Length: {length}"]
        lines.extend(f"{k}: {v}" for k, v in headers.items())
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def request(self, head: bytes, body: bytes, total_timeout: float | None = None) -> Http1Response:
        """Send one request; return once the status line and headers are in."""
        loop = asyncio.get_running_loop()
        for attempt in (0, 1):
            reused = False
            conn = None
            while self._idle:
                c = self._idle.pop()
                if not c.closed:
                    conn, reused = c, True
                    break
            if conn is None:
                conn = await self._connect()
            resp = Http1Response(conn, loop)
            conn.resp = resp
            if total_timeout is not None:
                resp._timer = loop.call_later(total_timeout, _expire, resp)
            assert conn.transport is not None
            conn.transport.write(head + body)
            try:
                await resp._head
            except BrokenResponse:
                resp.release()
                if reused and attempt == 0:
                    continue  # a stale keep-alive connection: try once on a fresh one
                raise
            except BaseException:
                resp.release()
                raise
            return resp
        raise BrokenResponse("unreachable")  # pragma: no cover

    async def close(self) -> None:
        while self._idle:
            self._idle.pop().abort()


def _expire(resp: Http1Response) -> None:
    resp._error(TotalTimeout("the upstream's answer exceeded its total time limit"))
    conn = resp._conn
    if conn is not None:
        conn.abort()
