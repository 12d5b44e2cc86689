"""The upstream HTTP/1.1 client against raw socket servers that misbehave on purpose."""

from __future__ import annotations

import asyncio
import gzip

import pytest

from manxue.providers.http1 import BrokenResponse, ConnectError, Http1Pool, TotalTimeout


async def _serve(handler) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length"))
    return await reader.readexactly(length)


def _ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


def _request(pool: Http1Pool, body: bytes = b"{}") -> tuple[bytes, bytes]:
    return pool.head("POST", "/v1/chat/completions", {"Content-Type": "application/json"}, len(body)), body


def test_keepalive_reuse_and_stale_connection_retry():
    connections = 0

    async def handler(reader, writer):
        nonlocal connections
        connections += 1
        await _read_request(reader)
        writer.write(_ok(b'{"n": 1}'))
        await writer.drain()
        writer.close()  # closes the kept-alive connection behind the client's back

    async def main():
        server, url = await _serve(handler)
        pool = Http1Pool(url)
        for _ in range(3):
            resp = await pool.request(*_request(pool))
            assert await resp.read() == b'{"n": 1}'
            await asyncio.sleep(0.05)  # let the close arrive, or not
        await pool.close()
        server.close()

    asyncio.run(main())
    assert connections == 3


def test_gzip_body_is_decoded():
    async def handler(reader, writer):
        await _read_request(reader)
        writer.write(_ok(gzip.compress(b'{"zipped": true}'), b"Content-Encoding: gzip\r\n"))
        await writer.drain()

    async def main():
        server, url = await _serve(handler)
        pool = Http1Pool(url)
        resp = await pool.request(*_request(pool))
        assert await resp.read() == b'{"zipped": true}'
        server.close()

    asyncio.run(main())


def test_chunked_lines_and_total_timeout():
    async def handler(reader, writer):
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in (b"data: a\n", b"data:", b" b\n\n"):
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
            await asyncio.sleep(0.02)
        await asyncio.sleep(5)  # then stall

    async def main():
        server, url = await _serve(handler)
        pool = Http1Pool(url)
        resp = await pool.request(*_request(pool), total_timeout=0.5)
        assert await resp.readline() == b"data: a\n"
        assert await resp.readline() == b"data: b\n"
        assert await resp.readline() == b"\n"
        with pytest.raises(TotalTimeout):
            await resp.readline()
        server.close()

    asyncio.run(main())


def test_connection_refused_and_broken_response():
    async def handler(reader, writer):
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await writer.drain()
        writer.close()

    async def main():
        server, url = await _serve(handler)
        pool = Http1Pool(url)
        resp = await pool.request(*_request(pool))
        with pytest.raises(BrokenResponse):
            await resp.read()
        server.close()
        await server.wait_closed()
        with pytest.raises(ConnectError):
            await Http1Pool(url, connect_timeout=1).request(*_request(pool))

    asyncio.run(main())


def test_malformed_response_is_an_error_not_a_hang():
    async def handler(reader, writer):
        await _read_request(reader)
        writer.write(b"THIS IS NOT HTTP\r\n\r\n")
        await writer.drain()

    async def main():
        server, url = await _serve(handler)
        pool = Http1Pool(url)
        with pytest.raises(BrokenResponse):
            await asyncio.wait_for(pool.request(*_request(pool)), 2)
        server.close()

    asyncio.run(main())
