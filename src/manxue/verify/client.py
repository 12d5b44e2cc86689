"""The verifier's HTTP client: chat completions against any OpenAI-compatible endpoint.

The verifier knows an endpoint only through its public API, as any customer would. Every
request is counted in the audit's ledger (requests and tokens, per check) before anything
else looks at the answer; a request the budget does not allow is never sent.

What comes back is kept only as parsed, bounded evidence: a chat completion's fields, the
stream's chunks, or for an error the OpenAI-style `error.message` (clipped), `type` and
`code`; never a raw body. Redirects are not followed (a 3xx is a failed reply), bodies are
read up to a cap, streams up to a cap on bytes and chunks. With a `guard` (the HTTP API),
every connection goes through `manxue.verify.netguard`; the CLI audits anything.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from manxue.verify.budget import Ledger
from manxue.verify.netguard import Policy, TargetForbidden, guarded_session

MAX_BODY = 4 << 20
"""Bytes read of one non-streamed answer; a longer one is a failed reply."""
MAX_ERROR_BODY = 64 << 10
"""Bytes read of an error answer (only to find its OpenAI-style error object)."""
MAX_STREAM_BYTES = 4 << 20
MAX_STREAM_CHUNKS = 10_000
MAX_MALFORMED = 20
"""Malformed stream lines described in a reply (each by position and kind, never content)."""
_ERROR_TEXT = 300  # characters of an error message (the endpoint's, or an exception's) kept
_USAGE_FIELDS = 24


def api_error(data: Any) -> dict[str, str] | None:
    """The OpenAI-style `{"error": {"message", "type", "code"}}` of an error body, clipped;
    None when the body is not such JSON (then nothing of it is kept)."""
    err = data.get("error") if isinstance(data, dict) else None
    if not isinstance(err, dict):
        return None
    out: dict[str, str] = {}
    for key, limit in (("message", _ERROR_TEXT), ("type", 64), ("code", 64)):
        value = err.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool):
            out[key] = _clip(str(value), limit)
    return out if out.get("message") else None


def usage_of(data: Any) -> dict[str, Any] | None:
    """`usage` of an answer or chunk, keeping only integer counts (one level of nested
    details, e.g. prompt_tokens_details.cached_tokens), at most 24 fields."""
    u = data.get("usage") if isinstance(data, dict) else None
    if not isinstance(u, dict):
        return None
    out: dict[str, Any] = {}
    for key, value in list(u.items())[:_USAGE_FIELDS]:
        if not isinstance(key, str) or len(key) > 64:
            continue
        if _is_count(value):
            out[key] = value
        elif isinstance(value, dict):
            inner = {k: v for k, v in list(value.items())[:_USAGE_FIELDS]
                     if isinstance(k, str) and len(k) <= 64 and _is_count(v)}
            if inner:
                out[key] = inner
    return out


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and abs(v) < 1 << 53


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _failure(exc: BaseException) -> str:
    return _clip(f"{type(exc).__name__}: {exc}", _ERROR_TEXT)


@dataclass
class Reply:
    """One non-streamed answer (or the error that came instead)."""

    status: int
    data: Any
    """The parsed JSON of a 200 answer (None for any other status)."""
    seconds: float
    error: str | None = None
    """Why no usable answer came: a network failure, a redirect, a body over the cap."""
    api_error: dict[str, str] | None = None
    """An error answer's OpenAI-style error object (message clipped), if it sent one."""

    @property
    def ok(self) -> bool:
        return self.status == 200 and isinstance(self.data, dict)

    @property
    def usage(self) -> dict[str, Any] | None:
        return usage_of(self.data)

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
    """What was wrong with malformed lines ("line 3: not a data: line"), never their text."""
    done: bool = False
    first_token_s: float | None = None
    seconds: float = 0.0
    error: str | None = None
    api_error: dict[str, str] | None = None

    @property
    def usage(self) -> dict[str, Any] | None:
        for chunk in reversed(self.chunks):
            u = usage_of(chunk)
            if u is not None:
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

    def bad_line(self, number: int, kind: str) -> None:
        if len(self.malformed) < MAX_MALFORMED:
            self.malformed.append(f"line {number}: {kind}")


def chat_url(base_url: str) -> str:
    """`http://h` and `http://h/v1` both mean `http://h/v1/chat/completions`."""
    base = base_url.rstrip("/")
    if base.endswith("/chat/completions"):
        return base
    path = urlsplit(base).path
    return f"{base}/chat/completions" if path.endswith("/v1") or path not in ("", "/") \
        else f"{base}/v1/chat/completions"


async def read_capped(resp: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The body, or None when it is longer than `limit` bytes (the rest is never read)."""
    if resp.content_length is not None and resp.content_length > limit:
        return None
    buf = bytearray()
    while True:
        chunk = await resp.content.read(64 << 10)
        if not chunk:
            return bytes(buf)
        buf += chunk
        if len(buf) > limit:
            return None


def _parse(raw: bytes) -> Any:
    try:
        return orjson.loads(raw) if raw.strip() else None
    except orjson.JSONDecodeError:
        return None


async def _error_of(resp: aiohttp.ClientResponse) -> tuple[str | None, dict[str, str] | None]:
    """(why it failed, its API error object) for an answer whose status is not 200."""
    if 300 <= resp.status < 400:
        return f"HTTP {resp.status} redirect (not followed)", None
    raw = await read_capped(resp, MAX_ERROR_BODY)
    return None, api_error(_parse(raw)) if raw is not None else None


class Endpoint:
    """An OpenAI-compatible endpoint and one model name on it.

    `guard`: the network policy every connection must pass (the HTTP API passes one; None,
    the default, reaches anything: the operator's own CLI). Once the policy refuses the
    target, `refused` holds why and no further request is sent."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, *,
                 side: str = "suspect", ledger: Ledger | None = None, timeout: float = 300.0,
                 concurrency: int = 4, guard: Policy | None = None) -> None:
        self.base_url = base_url
        self.model = model
        self.side = side
        self.ledger = ledger or Ledger()
        self.url = chat_url(base_url)
        self.guard = guard
        self.refused: TargetForbidden | None = None
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
            if self.guard is not None:
                self._session = guarded_session(self.guard, timeout=self._timeout,
                                                headers=self._headers)
            else:
                self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        return self._session

    def _post(self, body: dict[str, Any]) -> AbstractAsyncContextManager[aiohttp.ClientResponse]:
        return self._client().post(self.url, data=orjson.dumps({"model": self.model, **body}),
                                   allow_redirects=False)

    def _refusal(self) -> str | None:
        return f"TargetForbidden: {self.refused.message}" if self.refused is not None else None

    async def chat(self, check: str, body: dict[str, Any]) -> Reply:
        """POST one non-streamed request (network failures come back as status 0)."""
        if self.refused is not None:
            return Reply(0, None, 0.0, self._refusal())
        self.ledger.reserve(self.side)
        async with self._gate:
            start = time.monotonic()
            reply = await self._chat_once(body, start)
        self.ledger.record(check, self.side, reply.usage)
        return reply

    async def _chat_once(self, body: dict[str, Any], start: float) -> Reply:
        try:
            async with self._post(body) as resp:
                if resp.status != 200:
                    why, err = await _error_of(resp)
                    return Reply(resp.status, None, time.monotonic() - start, why, err)
                raw = await read_capped(resp, MAX_BODY)
        except TargetForbidden as exc:
            self.refused = exc
            return Reply(0, None, time.monotonic() - start, self._refusal())
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return Reply(0, None, time.monotonic() - start, _failure(exc))
        if raw is None:
            return Reply(200, None, time.monotonic() - start,
                         f"answer longer than {MAX_BODY} bytes (not read)")
        return Reply(200, _parse(raw), time.monotonic() - start)

    async def stream(self, check: str, body: dict[str, Any]) -> StreamReply:
        """POST one streamed request and read its server-sent events (up to the caps)."""
        if self.refused is not None:
            return StreamReply(0, error=self._refusal())
        self.ledger.reserve(self.side)
        full = {**body, "stream": True}
        async with self._gate:
            start = time.monotonic()
            out = StreamReply(0)
            try:
                async with self._post(full) as resp:
                    out.status = resp.status
                    if resp.status != 200:
                        out.error, out.api_error = await _error_of(resp)
                    else:
                        await _read_events(resp, out, start)
            except TargetForbidden as exc:
                self.refused = exc
                out.error = self._refusal()
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                out.error = _failure(exc)
            out.seconds = time.monotonic() - start
        self.ledger.record(check, self.side, out.usage)
        return out


async def _read_events(resp: aiohttp.ClientResponse, out: StreamReply, start: float) -> None:
    """Parse `data:` lines until the stream ends, or a cap is reached (then `out.error`)."""
    read = number = 0
    while True:
        raw_line = await resp.content.readline()
        if not raw_line:
            return
        read += len(raw_line)
        number += 1
        if read > MAX_STREAM_BYTES or len(out.chunks) >= MAX_STREAM_CHUNKS:
            out.error = (f"stream longer than {MAX_STREAM_BYTES} bytes or {MAX_STREAM_CHUNKS} "
                         "chunks; the rest was not read")
            return
        _take_line(raw_line, number, out, start)


def _take_line(raw_line: bytes, number: int, out: StreamReply, start: float) -> None:
    line = raw_line.decode("utf-8", "replace").rstrip("\r\n")
    if not line or line.startswith(":"):
        return
    if not line.startswith("data:"):
        out.bad_line(number, "not a `data:` line")
        return
    payload = line[5:].strip()
    if payload == "[DONE]":
        out.done = True
        return
    try:
        chunk = orjson.loads(payload)
    except orjson.JSONDecodeError:
        out.bad_line(number, "data is not JSON")
        return
    if not isinstance(chunk, dict):
        out.bad_line(number, "data is not a JSON object")
        return
    if out.first_token_s is None and _has_text(chunk):
        out.first_token_s = time.monotonic() - start
    out.chunks.append(chunk)


def _has_text(chunk: dict[str, Any]) -> bool:
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if isinstance(delta, dict) and (delta.get("content") or delta.get("reasoning_content")):
            return True
    return False
