"""Adapter for any OpenAI-compatible upstream: DeepSeek, cloud vendors, vLLM, SGLang,
llama-server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any, Literal

import orjson

from manxue.errors import UpstreamError, UpstreamTimeout
from manxue.protocol.chat_answer import shown
from manxue.protocol.completions import Endpoint
from manxue.providers.base import BufferedStream, ChunkStream, Completion, KeepAliveHook
from manxue.providers.http1 import BrokenResponse, ConnectError, Http1Pool, Http1Response, TotalTimeout
from manxue.settings import DeploymentSettings, Timeouts

_MAX_ERROR_BODY = 64 * 1024
_TRANSPORT = (ConnectError, BrokenResponse, TimeoutError)
"""What the transport raises (TotalTimeout is a TimeoutError); `_gateway_error` maps each."""

Phase = Literal["answer", "first token", "stream"]
"""Waiting for a whole answer, for a stream's first event, or reading a stream's events."""


class OpenAICompatProvider:
    """One deployment's upstream, with its own pooled keep-alive connections."""

    def __init__(self, settings: DeploymentSettings) -> None:
        self.settings = settings
        t = settings.timeouts
        self._pool = Http1Pool(settings.base_url or "", connect_timeout=t.connect)
        base = self._pool.base_path
        if base.endswith("/chat/completions"):
            self.path = base
        elif base.endswith("/v1"):
            self.path = base + "/chat/completions"
        else:
            self.path = base + "/v1/chat/completions"
        v1 = self.path.removesuffix("/chat/completions")
        root = v1.removesuffix("/v1")
        # DeepSeek serves FIM at /beta/completions beside /v1 (vLLM and SGLang: /v1/completions
        # with `suffix`, set `fim_path` for them)
        self.paths: dict[Endpoint, str] = {
            "chat": self.path, "completions": v1 + "/completions",
            "embeddings": v1 + "/embeddings",
            "fim": settings.fim_path or (root + "/beta/completions")}
        key = settings.resolved_api_key()
        self._key = key
        headers = {"Content-Type": "application/json", "Accept-Encoding": "identity",
                   "User-Agent": "manxue"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._headers = headers

    async def close(self) -> None:
        await self._pool.close()

    def describe(self) -> dict[str, Any]:
        return {"kind": "openai", "upstream_model": self.settings.upstream_model or self.settings.model}

    def _scrub(self, text: str) -> str:
        text = text.replace(self._key, "***") if self._key else text
        base = self.settings.base_url
        return text.replace(base, "the upstream") if base else text

    async def _post(self, body: dict[str, Any], endpoint: Endpoint = "chat") -> Http1Response:
        """The response to `body` (status 200); the transport's errors pass through, for the
        caller to map with `_gateway_error`."""
        data = orjson.dumps(body)
        head = self._pool.head("POST", self.paths[endpoint], self._headers, len(data))
        resp = await self._pool.request(head, data, self.settings.timeouts.total)
        if resp.status != 200:
            await self._raise_for_status(resp)
        return resp

    async def complete(self, body: dict[str, Any], endpoint: Endpoint = "chat") -> Completion:
        t = self.settings.timeouts
        name = self.settings.name
        resp: Http1Response | None = None
        try:
            async with asyncio.timeout(t.first_byte):
                resp = await self._post(body, endpoint)
                head = await _first_nonblank(resp)
            data = head + await resp.read()
        except _TRANSPORT as exc:
            raise _gateway_error(exc, name, t, "answer") from None
        finally:
            if resp is not None:
                resp.release()
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamError(f"deployment {name}: answer is not JSON", status=502) from None
        if not isinstance(parsed, dict):
            raise UpstreamError(f"deployment {name}: answer is not a JSON object", status=502)
        return Completion(body=data.strip(), data=parsed)

    async def stream(self, body: dict[str, Any], on_keepalive: KeepAliveHook | None,
                     endpoint: Endpoint = "chat") -> ChunkStream:
        t = self.settings.timeouts
        name = self.settings.name
        resp: Http1Response | None = None
        try:
            async with asyncio.timeout(t.first_byte):
                resp = await self._post(body, endpoint)
                events = _sse_payloads(resp, name, t, on_keepalive)
                first = await anext(events)
        except _TRANSPORT as exc:
            if resp is not None:
                resp.close()
            raise _gateway_error(exc, name, t, "first token") from None
        except StopAsyncIteration:
            if resp is not None:
                resp.close()
            raise UpstreamError(f"deployment {name}: stream ended before any data", status=502) from None
        except BaseException:
            if resp is not None:
                resp.close()
            raise
        stream_resp = resp

        async def closer() -> None:
            await events.aclose()
            stream_resp.close()

        return BufferedStream(first=first, rest=events, closer=closer)

    async def _raise_for_status(self, resp: Http1Response) -> None:
        try:
            async with asyncio.timeout(self.settings.timeouts.first_byte):
                raw = (await resp.read())[:_MAX_ERROR_BODY]
        except (BrokenResponse, TimeoutError):
            raw = b""
        finally:
            resp.release()
        relay = self._relayable(raw, resp.status)
        message = relay["message"] if relay else self._scrub(_error_message(raw) or "")
        raise UpstreamError(
            f"deployment {self.settings.name}: upstream answered {resp.status}: "
            f"{message or f'HTTP {resp.status}'}",
            status=resp.status,
            retry_after=_retry_after(resp.headers.get("retry-after")),
            relay=relay,
        )

    def _relayable(self, raw: bytes, status: int) -> dict[str, Any] | None:
        """The upstream's OpenAI-style error object, fit to show the client: its message with
        the upstream's key and model name taken out, its type, param and code kept."""
        if not 400 <= status < 500:
            return None
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        err = obj.get("error") if isinstance(obj, dict) else None
        if not isinstance(err, dict):
            return None
        message = self._scrub(shown(err.get("message")) or f"HTTP {status}")[:2000]
        upstream_model = self.settings.upstream_model
        if upstream_model and upstream_model != self.settings.model:
            message = message.replace(upstream_model, self.settings.model)
        kind, param, code = err.get("type"), err.get("param"), err.get("code")
        return {"message": message,
                "type": kind if isinstance(kind, str) and kind else "invalid_request_error",
                "param": param if isinstance(param, str) else None,
                "code": code if isinstance(code, str | int) and not isinstance(code, bool) else None}


async def _first_nonblank(resp: Http1Response) -> bytes:
    """Skip the blank lines DeepSeek sends while a non-streaming request waits."""
    while True:
        chunk = await resp.readany()
        if not chunk:
            return b""
        stripped = chunk.lstrip()
        if stripped:
            return stripped


async def _sse_payloads(
    resp: Http1Response, name: str, t: Timeouts, on_keepalive: KeepAliveHook | None
) -> AsyncGenerator[bytes, None]:
    """Yield each `data:` payload; tolerate comments and blank lines; stop at [DONE]."""
    started = False
    try:
        while True:
            line = await resp.readline()
            if not line:
                raise UpstreamError(f"deployment {name}: stream ended without [DONE]", status=502,
                                    code="upstream_stream_broken")
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
    except (BrokenResponse, TotalTimeout) as exc:
        raise _gateway_error(exc, name, t, "stream") from None


def _gateway_error(exc: BaseException, name: str, t: Timeouts, phase: Phase) -> UpstreamError:
    """The one mapping of a transport failure (`_TRANSPORT`) to the gateway's error, which the
    router judges and the client sees; the caller raises it `from None`.

    ConnectError → 502 upstream_unreachable. BrokenResponse → 502 upstream_error, or
    upstream_stream_broken once a stream's events are being read (as is a TotalTimeout
    then). A timeout → 504 upstream_timeout: while waiting for a whole answer, the total limit
    if TotalTimeout said so, else `first_byte`; while waiting for a stream's first event,
    always `first_byte`.
    """
    if phase == "stream":
        return UpstreamError(f"deployment {name}: stream broke ({exc})", status=502,
                             code="upstream_stream_broken")
    if isinstance(exc, ConnectError):
        return UpstreamError(f"deployment {name}: cannot connect ({exc})", status=502,
                             code="upstream_unreachable")
    if isinstance(exc, BrokenResponse):
        return UpstreamError(f"deployment {name}: {exc}", status=502)
    if phase == "answer" and isinstance(exc, TotalTimeout):
        return UpstreamTimeout(f"deployment {name}: answer not complete within {t.total:g}s")
    return UpstreamTimeout(f"deployment {name}: no {phase} within {t.first_byte:g}s")


def _stream_error(name: str, payload: bytes) -> UpstreamError:
    try:
        msg = shown(orjson.loads(payload)["error"].get("message")) or "error event"
    except (orjson.JSONDecodeError, AttributeError, TypeError, KeyError):
        msg = "error event"
    return UpstreamError(f"deployment {name}: upstream sent an error: {msg}", status=502)


def _error_message(raw: bytes) -> str | None:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        text = raw.decode("utf-8", "replace").strip()
        return text[:200] or None
    if isinstance(obj, dict):
        err = obj.get("error")
        if isinstance(err, dict):
            return shown(err.get("message"))[:500] or None
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
