"""The verifier's HTTP client: chat completions against any OpenAI-compatible endpoint.

The verifier knows an endpoint only through its public API, as any customer would. Every
request is counted in the audit's ledger (requests and tokens, per check) before anything
else looks at the answer; a request the budget does not allow is never sent.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from manxue.verify.budget import Ledger

_KEEP_TEXT = 2000  # characters of a raw body kept for the evidence


@dataclass
class Reply:
    """One non-streamed answer (or the error that came instead)."""

    status: int
    data: Any
    text: str
    seconds: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200 and isinstance(self.data, dict)

    @property
    def usage(self) -> dict[str, Any] | None:
        u = self.data.get("usage") if isinstance(self.data, dict) else None
        return u if isinstance(u, dict) else None

    @property
    def message(self) -> dict[str, Any]:
        try:
            m = self.data["choices"][0]["message"]
        except (KeyError, IndexError, TypeError):
            return {}
        return m if isinstance(m, dict) else {}

    @property
    def content(self) -> str:
        c = self.message.get("content")
        return c if isinstance(c, str) else ""

    @property
    def reasoning(self) -> str:
        r = self.message.get("reasoning_content")
        return r if isinstance(r, str) else ""

    @property
    def logprobs(self) -> list[dict[str, Any]] | None:
        try:
            lp = self.data["choices"][0]["logprobs"]
        except (KeyError, IndexError, TypeError):
            return None
        content = lp.get("content") if isinstance(lp, dict) else None
        return content if isinstance(content, list) else None


@dataclass
class StreamReply:
    """One streamed answer: the parsed chunks and what the stream looked like on the wire."""

    status: int
    chunks: list[dict[str, Any]] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)
    done: bool = False
    first_token_s: float | None = None
    seconds: float = 0.0
    error: str | None = None
    text: str = ""

    @property
    def usage(self) -> dict[str, Any] | None:
        for chunk in reversed(self.chunks):
            u = chunk.get("usage")
            if isinstance(u, dict):
                return u
        return None

    def joined(self, key: str) -> str:
        parts: list[str] = []
        for chunk in self.chunks:
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") if isinstance(choice, dict) else None
                value = delta.get(key) if isinstance(delta, dict) else None
                if isinstance(value, str):
                    parts.append(value)
        return "".join(parts)


def chat_url(base_url: str) -> str:
    """`http://h` and `http://h/v1` both mean `http://h/v1/chat/completions`."""
    base = base_url.rstrip("/")
    if base.endswith("/chat/completions"):
        return base
    path = urlsplit(base).path
    return f"{base}/chat/completions" if path.endswith("/v1") or path not in ("", "/") \
        else f"{base}/v1/chat/completions"


class Endpoint:
    """An OpenAI-compatible endpoint and one model name on it."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, *,
                 side: str = "suspect", ledger: Ledger | None = None, timeout: float = 300.0,
                 concurrency: int = 4) -> None:
        self.base_url = base_url
        self.model = model
        self.side = side
        self.ledger = ledger or Ledger()
        self.url = chat_url(base_url)
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._gate = asyncio.Semaphore(concurrency)
        self._session: aiohttp.ClientSession | None = None

    def describe(self) -> dict[str, str]:
        return {"base_url": self.base_url, "model": self.model}

    async def __aenter__(self) -> Endpoint:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        return self._session

    def _body(self, body: dict[str, Any]) -> bytes:
        return orjson.dumps({"model": self.model, **body})

    async def chat(self, check: str, body: dict[str, Any]) -> Reply:
        """POST one non-streamed request (network failures come back as status 0)."""
        self.ledger.reserve(self.side)
        async with self._gate:
            start = time.monotonic()
            try:
                async with self._client().post(self.url, data=self._body(body)) as resp:
                    raw = await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                reply = Reply(0, None, "", time.monotonic() - start, f"{type(exc).__name__}: {exc}")
                self.ledger.record(check, self.side, None)
                return reply
        try:
            data: Any = orjson.loads(raw) if raw.strip() else None
        except orjson.JSONDecodeError:
            data = None
        reply = Reply(status, data, raw[:_KEEP_TEXT].decode("utf-8", "replace"),
                      time.monotonic() - start)
        self.ledger.record(check, self.side, reply.usage)
        return reply

    async def stream(self, check: str, body: dict[str, Any]) -> StreamReply:
        """POST one streamed request and read its server-sent events to the end."""
        self.ledger.reserve(self.side)
        full = {**body, "stream": True}
        async with self._gate:
            start = time.monotonic()
            out = StreamReply(0)
            try:
                async with self._client().post(self.url, data=self._body(full)) as resp:
                    out.status = resp.status
                    if resp.status != 200:
                        out.text = (await resp.read())[:_KEEP_TEXT].decode("utf-8", "replace")
                    else:
                        await _read_events(resp, out, start)
            except (aiohttp.ClientError, TimeoutError) as exc:
                out.error = f"{type(exc).__name__}: {exc}"
            out.seconds = time.monotonic() - start
        self.ledger.record(check, self.side, out.usage)
        return out


async def _read_events(resp: aiohttp.ClientResponse, out: StreamReply, start: float) -> None:
    async for raw_line in resp.content:
        line = raw_line.decode("utf-8", "replace").rstrip("\r\n")
        if not line or line.startswith(":"):
            continue
        if not line.startswith("data:"):
            out.malformed.append(line[:200])
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            out.done = True
            continue
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            out.malformed.append(payload[:200])
            continue
        if not isinstance(chunk, dict):
            out.malformed.append(payload[:200])
            continue
        if out.first_token_s is None and _has_text(chunk):
            out.first_token_s = time.monotonic() - start
        out.chunks.append(chunk)


def _has_text(chunk: dict[str, Any]) -> bool:
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if isinstance(delta, dict) and (delta.get("content") or delta.get("reasoning_content")):
            return True
    return False
