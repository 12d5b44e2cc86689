"""Serving the shipped model: the default `manxue serve`, --model, `manxue models`, and the
hybrid policy (local first, cloud as overflow, unless privacy forbids leaving the machine)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys

import httpx

from manxue.engine.default_model import default_model_path
from manxue.providers.local import LocalProvider
from manxue.server.state import STATE_KEY
from manxue.testing.deepseek_emulator import Behavior
from tests.accounting.servers import free_port
from tests.helpers import deployment, wait_until, wait_until_async
from tests.test_cli_serve import _start, _stop

SMALL = {"n_ctx": 1024, "n_parallel": 1, "max_queue": 0, "n_threads": 1}
ASK = [{"role": "system", "content": "You are a helpful assistant."},
       {"role": "user", "content": "What is the capital of France?"}]


def test_default_serve_answers_with_the_shipped_model(tmp_path):
    proc, port = _start()  # no config, no --model
    try:
        r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=60, json={
            "model": "smollm2", "messages": ASK, "max_tokens": 12, "temperature": 0})
        assert r.status_code == 200, r.text
        body = r.json()
        assert "Paris" in body["choices"][0]["message"]["content"]
        u = body["usage"]
        assert u["prompt_tokens"] == u["prompt_cache_hit_tokens"] + u["prompt_cache_miss_tokens"]
        models = httpx.get(f"http://127.0.0.1:{port}/v1/models").json()["data"]
        assert [m["id"] for m in models] == ["smollm2"]
    finally:
        out = _stop(proc)
    assert "deployment 'smollm2' (local" in out and "local engine" in out


def test_serve_any_gguf_with_a_name_and_list_it():
    path = str(default_model_path())
    r = subprocess.run([sys.executable, "-m", "manxue", "models", "--model", path, "--name", "tiny",
                        "--json"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    [row] = json.loads(r.stdout)
    assert row["model"] == "tiny" and row["kind"] == "local" and row["quantization"] == "Q4_1"
    assert row["context_length"] and row["size_bytes"] > 50_000_000 and row["tokenizer"]
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "manxue", "serve", "--model", path, "--name", "tiny",
                             "--port", str(port), "--offline"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    def ready() -> bool:
        assert proc.poll() is None, "manxue serve exited"
        with contextlib.suppress(httpx.TransportError):
            return httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200
        return False

    try:
        wait_until(ready, timeout=30, interval=0.1, what="manxue serve --model to be ready")
        r2 = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=60,
                        json={"model": "tiny", "messages": ASK, "max_tokens": 4})
        assert r2.status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)


def _own_copy(tmp_path) -> str:
    """Engines are shared per model file in a process: a file of our own gets our options."""
    dst = tmp_path / "own.gguf"
    try:
        os.link(default_model_path(), dst)
    except OSError:
        shutil.copy(default_model_path(), dst)
    return str(dst)


def test_local_first_cloud_overflow_and_privacy(make_gateway, upstream, tmp_path):
    local = {"name": "edge", "model": "smollm2", "kind": "local", "options": SMALL,
             "path": _own_copy(tmp_path)}
    cloud = deployment(upstream, "cloud", model="smollm2", priority=1)
    gw = make_gateway([local, cloud], router={"backoff_base": 0.01})
    upstream.emu.default = Behavior(content="from the cloud")
    url = gw.url + "/v1/chat/completions"
    # the first answer runs long (end tokens masked) so the second finds the engine busy
    body = {"model": "smollm2", "messages": ASK, "max_tokens": 120, "temperature": 0,
            "logit_bias": {"0": -100, "1": -100, "2": -100}}

    edge = gw.app[STATE_KEY].router.get("edge")
    assert edge is not None and isinstance(edge.provider, LocalProvider)
    engine = edge.provider  # one sequence, no queue: busy while it holds a request

    async def two(privacy: bool) -> list[httpx.Response]:
        headers = {"X-Manxue-Privacy": "local"} if privacy else {}
        async with httpx.AsyncClient(timeout=60) as c:
            first = asyncio.create_task(c.post(url, json=body, headers=headers))
            await wait_until_async(lambda: engine.stats()["accepted"] >= 1, limit=30,
                                   what="the local engine to take the first request")
            second = await c.post(url, json={**body, "max_tokens": 4}, headers=headers)
            return [await first, second]

    a, b = asyncio.run(two(privacy=False))
    assert a.status_code == 200 and a.json()["model"] == "smollm2"
    assert b.status_code == 200 and b.json()["choices"][0]["message"]["content"] == "from the cloud"
    assert len(upstream.emu.received) == 1

    wait_until(lambda: engine.stats()["accepted"] == 0,  # freed at the engine's next step
               what="the local engine to free the finished sequence")
    a, b = asyncio.run(two(privacy=True))  # may not leave the machine: waits or is refused
    assert a.status_code == 200
    if b.status_code == 200:  # served locally once the engine had room (Retry-After honoured)
        assert b.json()["choices"][0]["message"]["content"] != "from the cloud"
    else:
        assert b.status_code in (429, 503)
    assert len(upstream.emu.received) == 1  # nothing private reached the cloud
