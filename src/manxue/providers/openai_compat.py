"""Adapter for any OpenAI-compatible upstream: DeepSeek, cloud vendors, vLLM, SGLang, llama-server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import aiohttp
import orjson

from manxue.errors import UpstreamError, UpstreamTimeout
from manxue.providers.base import BufferedStream, ChunkStream, Completion, KeepAliveHook
from manxue.settings import DeploymentSettings

_MAX_ERROR_BODY = 64 * 1024


class OpenAICompatProvider:
    """One deployment's upstream, with its own pooled keep-alive connections."""

    def __init__(self, settings: DeploymentSettings) -> None:
        self.settings = settings
        base = (settings.base_url or "").rstrip("/")
        self.url = base + "/chat/completions" if base.endswith("/v1") else base + "/v1/chat/completions"
        if base.endswith("/chat/completions"):
            self.url = base
        key = settings.resolved_api_key()
        self._headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
        if key:
            self._headers["Authorization"] = f"Bearer {key}"
        t = settings.timeouts
        self._timeout = aiohttp.ClientTimeout(total=t.total, sock_connect=t.connect, connect=t.connect)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, enable_cleanup_closed=True)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                json_serialize=lambda o: orjson.dumps(o).decode(),
                auto_decompress=True,
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def describe(self) -> dict[str, Any]:
        return {"kind": "openai", "upstream_model": self.settings.upstream_model or self.settings.model}

    async def _post(self, body: dict[str, Any]) -> aiohttp.ClientResponse:
        name = self.settings.name
        try:
            resp = await self._client().post(self.url, data=orjson.dumps(body), headers=self._headers)
        except TimeoutError:
            raise UpstreamTimeout(f"deployment {name}: connect timed out") from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(
                f"deployment {name}: cannot connect ({type(exc).__name__})",
                status=502,
                code="upstream_unreachable",
            ) from None
        if resp.status != 200:
            await _raise_for_status(name, resp)
        return resp

    async def complete(self, body: dict[str, Any]) -> Completion:
        t = self.settings.timeouts
        name = self.settings.name
        resp: aiohttp.ClientResponse | None = None
        try:
            async with asyncio.timeout(t.first_byte):
                resp = await self._post(body)
                head = await _first_nonblank(resp)
            rest = await resp.read()
        except TimeoutError:
            raise UpstreamTimeout(f"deployment {name}: no answer within {t.first_byte:g}s") from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(
                f"deployment {name}: connection broke ({type(exc).__name__})", status=502
            ) from None
        finally:
            if resp is not None:
                resp.release()
        data = head + rest
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamError(f"deployment {name}: answer is not JSON", status=502) from None
        if not isinstance(parsed, dict):
            raise UpstreamError(f"deployment {name}: answer is not a JSON object", status=502)
        return Completion(body=data.strip(), data=parsed)

    async def stream(self, body: dict[str, Any], on_keepalive: KeepAliveHook | None) -> ChunkStream:
        t = self.settings.timeouts
        name = self.settings.name
        resp: aiohttp.ClientResponse | None = None
        try:
            async with asyncio.timeout(t.first_byte):
                resp = await self._post(body)
                events = _sse_payloads(resp, name, on_keepalive)
                first = await anext(events)
        except TimeoutError:
            if resp is not None:
                resp.close()
            raise UpstreamTimeout(f"deployment {name}: no first token within {t.first_byte:g}s") from None
        except StopAsyncIteration:
            assert resp is not None
            resp.close()
            raise UpstreamError(f"deployment {name}: stream ended before any data", status=502) from None
        except BaseException:
            if resp is not None:
                resp.close()
            raise

        async def closer() -> None:
            await events.aclose()
            resp.close()

        return BufferedStream(first=first, rest=events, closer=closer)


async def _first_nonblank(resp: aiohttp.ClientResponse) -> bytes:
    """Skip the blank lines DeepSeek sends while a non-streaming request waits."""
    while True:
        chunk = await resp.content.readany()
        if not chunk:
            return b""
        stripped = chunk.lstrip()
        if stripped:
            return stripped


async def _sse_payloads(
    resp: aiohttp.ClientResponse, name: str, on_keepalive: KeepAliveHook | None
) -> AsyncGenerator[bytes, None]:
    """Yield each `data:` payload; tolerate comments and blank lines; stop at [DONE]."""
    content = resp.content
    started = False
    try:
        while True:
            line = await content.readline()
            if not line:
                raise UpstreamError(
                    f"deployment {name}: stream ended without [DONE]", status=502,
                    code="upstream_stream_broken",
                )
            if line.startswith(b"data:"):
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    return
                if payload:
                    started = True
                    if payload.startswith(b'{"error"'):
                        raise _stream_error(name, payload)
                    yield payload
            elif line.startswith(b":") and not started and on_keepalive is not None:
                await on_keepalive()
    except aiohttp.ClientError as exc:
        raise UpstreamError(
            f"deployment {name}: stream broke ({type(exc).__name__})", status=502,
            code="upstream_stream_broken",
        ) from None


def _stream_error(name: str, payload: bytes) -> UpstreamError:
    try:
        msg = str(orjson.loads(payload)["error"].get("message", "error"))
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        msg = "error event"
    return UpstreamError(f"deployment {name}: upstream sent an error: {msg}", status=502)


async def _raise_for_status(name: str, resp: aiohttp.ClientResponse) -> None:
    try:
        raw = await resp.content.read(_MAX_ERROR_BODY)
    except aiohttp.ClientError:
        raw = b""
    finally:
        resp.release()
    message = _error_message(raw) or resp.reason or "error"
    retry_after = _retry_after(resp.headers.get("Retry-After"))
    raise UpstreamError(
        f"deployment {name}: upstream answered {resp.status}: {message}",
        status=resp.status,
        retry_after=retry_after,
        upstream_body=raw,
    )


def _error_message(raw: bytes) -> str | None:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        text = raw.decode("utf-8", "replace").strip()
        return text[:200] or None
    if isinstance(obj, dict):
        err = obj.get("error")
        if isinstance(err, dict):
            return str(err.get("message") or "")[:500] or None
        if isinstance(err, str):
            return err[:500]
    return None


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
