"""A stand-in for `python -m vllm.entrypoints.openai.api_server` / `sglang.launch_server`.

It takes the same flags (and ignores those it has no use for), serves /health, /v1/models and
/v1/chat/completions on 127.0.0.1, and can be told to misbehave:

    --startup-delay S    /health answers 503 for S seconds (weights "loading")
    --crash-after S      exit with code 3 S seconds after it is ready ...
    --crash-times N      ... on the first N starts only (counted in --state-file)
    --spawn-worker FILE  fork a worker that ignores SIGTERM, like a GPU worker; its pid goes in FILE
    --ignore-sigterm     the server itself ignores SIGTERM
    --pid-file FILE      write the server's pid
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--model", "--model-path", dest="model", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--served-model-name", dest="served", default=None)
    p.add_argument("--startup-delay", type=float, default=0.0)
    p.add_argument("--crash-after", type=float, default=None)
    p.add_argument("--crash-times", type=int, default=-1)
    p.add_argument("--state-file", default=None)
    p.add_argument("--spawn-worker", default=None)
    p.add_argument("--ignore-sigterm", action="store_true")
    p.add_argument("--pid-file", default=None)
    args, rest = p.parse_known_args(argv)
    args.rest = rest
    return args


def count_start(state_file: str | None) -> int:
    if not state_file:
        return 1
    path = Path(state_file)
    n = int(path.read_text() or "0") + 1 if path.exists() else 1
    path.write_text(str(n))
    return n


def main() -> None:
    args = parse(sys.argv[1:])
    start = count_start(args.state_file)
    name = args.served or args.model
    t0 = time.monotonic()
    print(f"fake engine start #{start}: model={args.model} served={name} "
          f"flags={json.dumps(sys.argv[1:])}", flush=True)
    if args.pid_file:
        Path(args.pid_file).write_text(str(os.getpid()))
    if args.spawn_worker:
        worker = subprocess.Popen(
            [sys.executable, "-c",
             "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
        Path(args.spawn_worker).write_text(str(worker.pid))
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def loading() -> bool:
        return bool(time.monotonic() - t0 < args.startup_delay)

    async def health(request: web.Request) -> web.Response:
        return web.Response(status=503 if loading() else 200)

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": "fake-engine"}]})

    async def chat(request: web.Request) -> web.StreamResponse:
        body: dict[str, Any] = await request.json()
        if body.get("model") != name:
            return web.json_response({"error": {"message": f"model {body.get('model')!r} not found",
                                                "type": "invalid_request_error", "code": 404}},
                                     status=404)
        last = str(body["messages"][-1].get("content", ""))
        text = f"fake-engine:{args.port} says: {last}"
        usage = {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}
        base = {"id": "chatcmpl-fake", "created": int(time.time()), "model": name}
        if not body.get("stream"):
            return web.json_response(base | {"object": "chat.completion", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text},
                 "finish_reason": "stop"}], "usage": usage})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        chunk = base | {"object": "chat.completion.chunk"}
        for delta, finish in (({"role": "assistant", "content": text}, None), ({}, "stop")):
            event = chunk | {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            await resp.write(b"data: " + json.dumps(event).encode() + b"\n\n")
        await resp.write(b"data: " + json.dumps(chunk | {"choices": [], "usage": usage}).encode()
                         + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        return resp

    tasks: set[asyncio.Task[None]] = set()

    async def crash_later(app: web.Application) -> None:
        if args.crash_after is None or (0 <= args.crash_times < start):
            return

        async def crash() -> None:
            await asyncio.sleep(args.startup_delay + args.crash_after)
            print(f"fake engine start #{start}: crashing", flush=True)
            os._exit(3)

        tasks.add(asyncio.get_running_loop().create_task(crash()))

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", chat)
    app.on_startup.append(crash_later)
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None,
                handle_signals=not args.ignore_sigterm, shutdown_timeout=1)


if __name__ == "__main__":
    main()
