"""The chat service routes call: route a request, relay the answer, settle its usage once.

Streaming and non-streaming answers, and requests that fail before any answer, all end in the
same `_settle`, so usage is read and recorded by one path, exactly once per request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import orjson

from manxue.errors import ManxueError, UpstreamError
from manxue.gateway.deployment import Deployment
from manxue.gateway.router import Router
from manxue.metrics import Metrics
from manxue.protocol.completions import Endpoint
from manxue.protocol.sse import DONE, error_event
from manxue.protocol.types import ApiRequest, Outcome, RequestContext, UsageSink
from manxue.protocol.usage import Usage
from manxue.providers.base import ChunkStream, Completion, KeepAliveHook

log = logging.getLogger("manxue.gateway")


@dataclass(slots=True)
class _Held:
    """A stream acquired for a request and not yet relayed, and how to give it back."""

    router: Router
    dep: Deployment
    chunks: ChunkStream

    @property
    def deployment(self) -> str:
        return self.dep.name

    async def give_back(self) -> None:
        try:
            await self.chunks.aclose()
        finally:
            self.router.release(self.dep)


class ChatService:
    def __init__(self, router: Router, metrics: Metrics, sinks: list[UsageSink] | None = None):
        self.router = router
        self.metrics = metrics
        self.sinks: list[UsageSink] = sinks or []

    async def complete(self, req: ApiRequest, raw: dict[str, Any], ctx: RequestContext,
                       endpoint: Endpoint = "chat") -> bytes:
        async def call(dep: Deployment) -> Completion:
            return await dep.provider.complete(_body_for(dep, raw), endpoint)

        try:
            got = await self.router.acquire(req.model, call, ctx.local_only)
        except BaseException as exc:  # refused, failed, or the client left: settle, then say so
            self._settle(ctx, "", None, False, 0, {"error": _describe(exc)})
            raise
        ctx.first_byte_at = time.perf_counter()
        self.router.release(got.deployment)
        data = got.result.data
        self._settle(ctx, got.deployment.name, Usage.from_dict(data.get("usage")), True,
                     got.attempts, body=data)
        return got.result.body

    async def stream(self, req: ApiRequest, raw: dict[str, Any], ctx: RequestContext,
                     on_keepalive: KeepAliveHook | None, endpoint: Endpoint = "chat"
                     ) -> AsyncGenerator[bytes, None]:
        """Acquire a first byte (retrying as needed), then return the relay of the rest."""
        options = dict(raw.get("stream_options") or {})
        options["include_usage"] = True  # always ask upstream; billing needs it

        async def call(dep: Deployment) -> ChunkStream:
            body = _body_for(dep, raw)
            body["stream_options"] = options
            return await dep.provider.stream(body, on_keepalive, endpoint)

        try:
            got = await self.router.acquire(req.model, call, ctx.local_only)
        except BaseException as exc:
            self._settle(ctx, "", None, False, 0, {"error": _describe(exc)})
            raise
        ctx.first_byte_at = time.perf_counter()
        ctx.holding = _Held(self.router, got.deployment, got.result)
        return self._relay(got.result, got.deployment, got.attempts, req.wants_usage_chunk, ctx)

    async def finish(self, ctx: RequestContext, error: str = "the request ended before an answer") \
            -> None:
        """Settle a request that never reached its settlement (an exception between admission
        and the relay, or a stream whose relay never started), and give back what it held.
        Harmless after a normal end."""
        held, ctx.holding = ctx.holding, None
        try:
            if held is not None:
                await held.give_back()
        finally:
            if not ctx.settled:
                self._settle(ctx, held.deployment if held else "", None, False, 0, {"error": error})

    async def _relay(self, chunks: ChunkStream, dep: Deployment, attempts: int,
                     want_usage: bool, ctx: RequestContext) -> AsyncGenerator[bytes, None]:
        usage: Usage | None = None
        settled = False
        error: str | None = None
        seen: list[bytes] | None = [] if self.sinks else None
        ctx.holding = None  # the relay owns the stream and the deployment now
        try:
            async for payload in chunks:
                if seen is not None:
                    seen.append(payload)
                if b'"usage"' in payload:
                    obj = _json_object(payload)
                    found = Usage.from_dict(obj.get("usage"))
                    if found is not None:
                        usage = found
                        if not want_usage and not obj.get("choices"):
                            continue  # the usage-only chunk the client did not ask for
                yield b"data: " + payload + b"\n\n"
            # recorded before the client sees the end, so a delivered answer is always billed
            settled = True  # one attempt: a row that cannot be written now fails the same way again
            try:
                self._settle(ctx, dep.name, usage, True, attempts, payloads=seen)
            except ManxueError as exc:  # not recorded (the ledger is unavailable): no [DONE]
                yield error_event(exc.message, exc.code or "error", exc.type)
                return
            yield DONE
        except UpstreamError as exc:
            error = exc.message
            self.metrics.child(self.metrics.stream_errors, dep.name).inc()
            yield error_event(
                "the upstream broke off this answer after it had started; the text so far is "
                "incomplete: retry the request", code="stream_interrupted")
        except BaseException as exc:  # the client left, or something broke: settled below
            error = _describe(exc)
            raise
        finally:
            await chunks.aclose()
            self.router.release(dep)
            if not settled:
                try:
                    self._settle(ctx, dep.name, usage, False, attempts,
                                 {"error": error} if error else None, payloads=seen)
                except ManxueError as exc:  # the client is gone or told already; the log keeps it
                    log.error("request %s: its usage could not be recorded: %s", ctx.request_id,
                              exc.message)

    def _settle(self, ctx: RequestContext, deployment: str, usage: Usage | None,
                completed: bool, attempts: int, extra: dict[str, Any] | None = None,
                body: dict[str, Any] | None = None, payloads: list[bytes] | None = None) -> None:
        if ctx.settled:
            return
        ctx.settled = True
        now = time.perf_counter()
        if usage is not None:
            m = self.metrics
            m.child(m.tokens, ctx.model, "prompt").inc(usage.prompt_tokens)
            m.child(m.tokens, ctx.model, "completion").inc(usage.completion_tokens)
            m.child(m.tokens, ctx.model, "cache_hit").inc(usage.cache_hit_tokens)
            m.child(m.tokens, ctx.model, "cache_miss").inc(usage.cache_miss_tokens)
            m.child(m.tokens, ctx.model, "reasoning").inc(usage.reasoning_tokens)
        if not self.sinks:
            return
        ttft = None if ctx.first_byte_at is None else ctx.first_byte_at - ctx.started
        outcome = Outcome(ctx, deployment, usage, completed, attempts,
                          now - ctx.started, ttft, extra or {}, body, payloads)
        for sink in self.sinks:
            sink.record(outcome)


def _json_object(payload: bytes) -> dict[str, Any]:
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return {}
    return obj if isinstance(obj, dict) else {}


def _describe(exc: BaseException) -> str:
    """What the ledger's error column says about an exception."""
    if isinstance(exc, ManxueError):
        return exc.message
    if isinstance(exc, GeneratorExit | asyncio.CancelledError):
        return "the client went away"
    return f"internal error: {type(exc).__name__}"


def _body_for(dep: Deployment, raw: dict[str, Any]) -> dict[str, Any]:
    body = dict(raw)
    body["model"] = dep.upstream_model
    return body
