"""A real HTTP server that behaves like the DeepSeek API, for tests, benchmarks and demos.

It streams (with `reasoning_content` deltas when asked), sends `: keep-alive` comments or
blank lines while it "waits", answers 429 with Retry-After or 503 "server busy", can hold
back the first byte, drop a stream in the middle, and reports cache hit/miss usage.

Behaviour is scripted: `emu.push(Behavior(...))` queues what the next request gets; with
the queue empty every request gets `emu.default`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web


@dataclass(frozen=True)
class Behavior:
    status: int = 200
    retry_after: float | None = None
    error_message: str = "Server busy, please try again later."
    first_byte_delay: float = 0.0
    keepalive_every: float = 0.0  # while delaying: comments (stream) or blank lines (not)
    chunks: int = 3  # content chunks in a stream
    chunk_delay: float = 0.0
    drop_after: int | None = None  # close the connection after this many content chunks
    reasoning: str | None = None  # reasoning text, streamed before the answer
    content: str | None = None  # default: echo the last user message
    cache_hit_tokens: int = 0
    usage: bool = True
    usage_padding: int = 0  # added to prompt_tokens (an inflating upstream)
    openai_usage: bool = False  # cache hits only as prompt_tokens_details (no prompt_cache_*)
    completion_padding: int = 0  # added to completion_tokens (output past max_tokens)
    honour_n: bool = False  # answer `n` choices, as vLLM and OpenAI do (DeepSeek answers one)
    error_type: str | None = None  # an error answer's type (default by status)
    error_code: str | None = None
    error_param: str | None = None
    raw_answer: bytes | None = None  # sent as it is: the whole body, or a stream's one event
    tool_calls: tuple[tuple[str, str], ...] = ()
    """(name, JSON arguments) of function calls to answer with (finish_reason tool_calls);
    streamed as DeepSeek does: the id and name first, then the arguments in two pieces."""


@dataclass
class Received:
    body: dict[str, Any]
    headers: dict[str, str]
    at: float
    path: str = ""


@dataclass
class DeepSeekEmulator:
    """Tokens are counted as whitespace-separated words, the same way for streams and bodies."""

    model: str = "deepseek-chat"
    default: Behavior = field(default_factory=Behavior)
    script: deque[Behavior] = field(default_factory=deque)
    received: list[Received] = field(default_factory=list)
    record: bool = True
    api_key: str | None = None
    cancelled: int = 0
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def push(self, *behaviors: Behavior) -> None:
        self.script.extend(behaviors)

    def reset(self) -> None:
        self.script.clear()
        self.received.clear()
        self.cancelled = 0
        self.default = Behavior()
        self.api_key = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        for prefix in ("/v1", ""):
            app.router.add_post(f"{prefix}/chat/completions", self._chat)
            app.router.add_get(f"{prefix}/models", self._models)
            app.router.add_post(f"{prefix}/completions", self._text)  # as vLLM and OpenAI do
            app.router.add_post(f"{prefix}/embeddings", self._embeddings)
        app.router.add_post("/beta/completions", self._text)  # DeepSeek's FIM
        return app

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": self.model, "object": "model", "owned_by": "deepseek"}]})

    async def _begin(self, request: web.Request
                     ) -> tuple[dict[str, Any], Behavior] | web.Response:
        """The request read and recorded, and the behaviour to answer it with; or the error
        answer (key refused, scripted error, raw answer) to send instead."""
        raw = await request.read()
        body = orjson.loads(raw)
        if self.record:
            self.received.append(Received(body, dict(request.headers), time.monotonic(),
                                          request.path))
        if self.api_key is not None and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _error(401, "Authentication Fails (no such user)", "invalid_request_error")
        b = self.script.popleft() if self.script else self.default
        if b.raw_answer is not None:
            return self._raw(body, b.raw_answer, b.status)
        if b.status != 200:
            if b.first_byte_delay:
                await asyncio.sleep(b.first_byte_delay)
            headers = {"Retry-After": f"{b.retry_after:g}"} if b.retry_after is not None else {}
            kind = b.error_type or ("rate_limit_error" if b.status == 429 else "server_error")
            return _error(b.status, b.error_message, kind, headers, b.error_code, b.error_param)
        return body, b

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        begun = await self._begin(request)
        if isinstance(begun, web.Response):
            return begun
        body, b = begun
        try:
            if body.get("stream"):
                return await self._stream(request, body, b)
            return await self._whole(request, body, b)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise

    async def _text(self, request: web.Request) -> web.StreamResponse:
        """Text completions, and FIM with `suffix`: the answer is `content`, or the prompt's
        words echoed ("after <prompt> before <suffix>" for FIM); tokens counted as words."""
        begun = await self._begin(request)
        if isinstance(begun, web.Response):
            return begun
        body, b = begun
        prompt = str(body["prompt"]) if isinstance(body.get("prompt"), str) else ""
        text = b.content if b.content is not None else (
            f"after {prompt} before {body['suffix']}" if body.get("suffix") else f"You said: {prompt}")
        words = len(prompt.split()) + len(str(body.get("suffix") or "").split())
        usage = {"prompt_tokens": words, "completion_tokens": len(text.split()),
                 "total_tokens": words + len(text.split()),
                 "prompt_cache_hit_tokens": b.cache_hit_tokens,
                 "prompt_cache_miss_tokens": words - b.cache_hit_tokens}
        head = {"id": self._id().replace("chatcmpl", "cmpl"), "object": "text_completion",
                "created": int(time.time()), "model": body.get("model", self.model)}
        if not body.get("stream"):
            whole = {**head, "choices": [
                {"index": 0, "text": text, "logprobs": None, "finish_reason": "stop"}]}
            if b.usage:
                whole["usage"] = usage
            return web.json_response(whole)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        with contextlib.suppress(ConnectionResetError):  # the client may leave: nobody to tell
            await resp.prepare(request)
            for piece in _split(text, b.chunks):
                await resp.write(b"data: " + orjson.dumps({**head, "choices": [
                    {"index": 0, "text": piece, "logprobs": None, "finish_reason": None}]})
                    + b"\n\n")
            await resp.write(b"data: " + orjson.dumps({**head, "choices": [
                {"index": 0, "text": "", "logprobs": None, "finish_reason": "stop"}]}) + b"\n\n")
            if b.usage and (body.get("stream_options") or {}).get("include_usage"):
                await resp.write(b"data: " + orjson.dumps({**head, "choices": [], "usage": usage})
                                 + b"\n\n")
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
        return resp

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        """Eight-dimensional vectors, a function of each input's text; tokens counted as words."""
        begun = await self._begin(request)
        if isinstance(begun, web.Response):
            return begun
        body, _b = begun
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
        data = []
        for i, text in enumerate(texts):
            seed = sum(map(ord, str(text)))
            data.append({"object": "embedding", "index": i,
                         "embedding": [((seed * (k + 3)) % 97) / 97 for k in range(8)]})
        tokens = sum(len(str(t).split()) for t in texts)
        return web.json_response({"object": "list", "data": data,
                                  "model": body.get("model", self.model),
                                  "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    # ---- answers ---------------------------------------------------------------------------
    @staticmethod
    def _raw(body: dict[str, Any], raw: bytes, status: int) -> web.Response:
        """An upstream that answers nonsense: `raw` as the body, or as one event of a stream."""
        if body.get("stream") and status == 200:
            return web.Response(body=b"data: " + raw + b"\n\ndata: [DONE]\n\n",
                                content_type="text/event-stream")
        return web.Response(status=status, body=raw, content_type="application/json")

    def _answer(self, body: dict[str, Any], b: Behavior) -> str:
        if b.content is not None:
            return b.content
        users = [m for m in body.get("messages", []) if m.get("role") == "user"]
        last: dict[str, Any] = users[-1] if users else {}
        text = last.get("content") if isinstance(last.get("content"), str) else ""
        return f"You said: {text}"

    def _usage(self, body: dict[str, Any], b: Behavior, completion: int, reasoning: int) -> Any:
        words = sum(len(str(m.get("content") or "").split()) + 4 for m in body.get("messages", []))
        prompt = words + b.usage_padding
        hit = min(b.cache_hit_tokens, prompt)
        completion += b.completion_padding
        usage: dict[str, Any] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": hit},
            "completion_tokens_details": {"reasoning_tokens": reasoning},
        }
        if not b.openai_usage:
            usage["prompt_cache_hit_tokens"] = hit
            usage["prompt_cache_miss_tokens"] = prompt - hit
        return usage

    def _id(self) -> str:
        return f"chatcmpl-emu{next(self._ids)}"

    async def _whole(self, request: web.Request, body: dict[str, Any], b: Behavior) -> web.StreamResponse:
        text = self._answer(body, b)
        message: dict[str, Any] = {"role": "assistant", "content": text}
        reasoning_tokens = 0
        if b.reasoning is not None:
            message["reasoning_content"] = b.reasoning
            reasoning_tokens = len(b.reasoning.split())
        n = _choices(body, b)
        if b.tool_calls:
            message["tool_calls"] = [{"id": f"call_{i}", "type": "function",
                                      "function": {"name": name, "arguments": args}}
                                     for i, (name, args) in enumerate(b.tool_calls)]
        finish = "tool_calls" if b.tool_calls else "stop"
        out: dict[str, Any] = {
            "id": self._id(), "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", self.model),
            "choices": [{"index": i, "message": message, "logprobs": None, "finish_reason": finish}
                        for i in range(n)],
            "system_fingerprint": "fp_emulator",
        }
        if b.usage:
            out["usage"] = self._usage(body, b, (len(text.split()) + reasoning_tokens) * n,
                                       reasoning_tokens * n)
        if not b.first_byte_delay:
            return web.Response(body=orjson.dumps(out), content_type="application/json")
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        await self._wait(resp, b, b"\n")
        await resp.write(orjson.dumps(out))
        await resp.write_eof()
        return resp

    async def _wait(self, resp: web.StreamResponse, b: Behavior, beat: bytes) -> None:
        if not b.keepalive_every:
            await asyncio.sleep(b.first_byte_delay)
            return
        deadline = time.monotonic() + b.first_byte_delay
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(b.keepalive_every, left))
            if deadline - time.monotonic() > 0:
                await resp.write(beat)

    async def _stream(self, request: web.Request, body: dict[str, Any], b: Behavior) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        # the client may leave (a cancelled hedge, the end of a load test), even before the
        # headers are out: nobody to tell then
        with contextlib.suppress(ConnectionResetError):
            await resp.prepare(request)
            await self._events(request, resp, body, b)
        return resp

    async def _events(self, request: web.Request, resp: web.StreamResponse, body: dict[str, Any],
                      b: Behavior) -> None:
        if b.first_byte_delay:
            await self._wait(resp, b, b": keep-alive\n\n")
        cid, created, model = self._id(), int(time.time()), body.get("model", self.model)

        def chunk(delta: dict[str, Any], finish: str | None = None, usage: Any = None) -> bytes:
            obj: dict[str, Any] = {
                "id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                "system_fingerprint": "fp_emulator",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }
            if usage is not None:
                obj["usage"] = usage
            return b"data: " + orjson.dumps(obj) + b"\n\n"

        await resp.write(chunk({"role": "assistant", "content": ""}))
        reasoning_parts = _split(b.reasoning, b.chunks) if b.reasoning is not None else []
        text = self._answer(body, b)
        parts = _split(text, b.chunks)
        for piece in reasoning_parts:
            await resp.write(chunk({"reasoning_content": piece, "content": None}))
        for sent, piece in enumerate(parts):
            if b.drop_after is not None and sent >= b.drop_after:
                if request.transport is not None:
                    request.transport.close()  # a drop in the middle: no [DONE], no usage
                return
            if b.chunk_delay:
                await asyncio.sleep(b.chunk_delay)
            await resp.write(chunk({"content": piece}))
        for i, (name, args) in enumerate(b.tool_calls):
            half = len(args) // 2
            await resp.write(chunk({"tool_calls": [{"index": i, "id": f"call_{i}", "type": "function",
                                                    "function": {"name": name, "arguments": ""}}]}))
            for piece in (args[:half], args[half:]):
                await resp.write(chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}))
        n = _choices(body, b)  # the other choices are not streamed, only counted
        reasoning_tokens = (len(b.reasoning.split()) if b.reasoning is not None else 0) * n
        completion = len(text.split()) * n + reasoning_tokens
        usage = self._usage(body, b, completion, reasoning_tokens) if b.usage else None
        opts = body.get("stream_options") or {}
        await resp.write(chunk({}, "tool_calls" if b.tool_calls else "stop"))
        if usage is not None and opts.get("include_usage"):
            payload = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                       "choices": [], "usage": usage}
            await resp.write(b"data: " + orjson.dumps(payload) + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()


def _split(text: str, n: int) -> list[str]:
    """Cut `text` into `n` pieces at spaces where possible (at least one piece)."""
    words = text.split(" ")
    n = max(1, min(n, len(words)))
    size = -(-len(words) // n)
    return [" ".join(words[i:i + size]) + (" " if i + size < len(words) else "")
            for i in range(0, len(words), size)]


def _choices(body: dict[str, Any], b: Behavior) -> int:
    n = body.get("n")
    return n if b.honour_n and isinstance(n, int) and n > 1 else 1


def _error(status: int, message: str, kind: str, headers: dict[str, str] | None = None,
           code: str | None = None, param: str | None = None) -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json",
                        headers=headers or {})


def main(argv: list[str] | None = None) -> None:
    """`python -m manxue.testing.deepseek_emulator --port 9100`: a stand-in DeepSeek API."""
    import argparse

    from manxue.server.run import new_loop

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9100)
    ap.add_argument("--chunks", type=int, default=3, help="content chunks per streamed answer")
    args = ap.parse_args(argv)
    emu = DeepSeekEmulator(default=Behavior(chunks=args.chunks), record=False)
    web.run_app(emu.app(), host=args.host, port=args.port, access_log=None, print=None,
                loop=new_loop())


if __name__ == "__main__":
    main()
