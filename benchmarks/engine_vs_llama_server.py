"""manxue's local engine against llama.cpp's own C++ server, and what grammars cost.

    python benchmarks/engine_vs_llama_server.py --llama-server PATH [--threads 2]

`PATH` is llama-server built from the llama.cpp that llama-cpp-python's source package vendors
(the same kernels manxue runs):

    pip download llama-cpp-python==VERSION --no-binary :all: --no-deps
    tar xzf llama_cpp_python-VERSION.tar.gz && cd llama_cpp_python-VERSION/vendor/llama.cpp
    cmake -B build -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF && \\
        cmake --build build --target llama-server -j2

Same model (SmolLM2-135M-Instruct Q4_1), same threads, same load as
benchmarks/engine_throughput.py (streamed 128-token answers, end tokens masked, each of C
clients sending requests back to back), at concurrency 1 and 8, alternating the servers,
--repeats times: the best of each, and the median of the repeats' ratios (each repeat runs the
two servers back to back, so its ratio shares the machine's load of the moment). Then manxue
alone with a JSON Schema response_format and with a forced tool call, against plain sampling
at the same concurrency. Writes docs/benchmarks/engine-vs-llama-server.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))
from engine_throughput import (
    NO_END,
    Server,
    free_port,
    loadavg,
    machine,
    server_env,
    start_manxue,
    started,
    user,
    wait_ready,
)
from loadgen import write_doc

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "benchmarks" / "engine-vs-llama-server.md"
# The story is long enough (minLength) that every answer runs to max_tokens, as the plain ones
# do (end tokens masked): tok/s then compares sampling with sampling, not a shorter answer's
# larger share of prefill.
STORY = {"type": "json_schema", "json_schema": {"name": "story", "schema": {
    "type": "object", "properties": {"title": {"type": "string", "maxLength": 40},
                                     "story": {"type": "string", "minLength": 4000}},
    "required": ["title", "story"]}}}
TOOL = [{"type": "function", "function": {"name": "write_story", "parameters": {
    "type": "object", "properties": {"story": {"type": "string", "minLength": 4000}},
    "required": ["story"]}}}]
SHAPES: dict[str, dict[str, Any]] = {
    "plain": {}, "json_schema": {"response_format": STORY},
    "forced tool call": {"tools": TOOL, "tool_choice": "required"},
}


def start_llama_server(binary: Path, model: Path, threads: int, slots: int, workdir: Path,
                       env: dict[str, str]) -> Server:
    port = free_port()
    log = workdir / "llama_server.log"
    args = ["-m", str(model), "-t", str(threads), "-tb", str(threads), "--port", str(port),
            "-c", str(4096 * slots), "-np", str(slots), "--host", "127.0.0.1", "--no-webui"]
    proc = subprocess.Popen([str(binary), *args], stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, env=env)
    shown = f"llama-server -m MODEL -t {threads} -tb {threads} -c {4096 * slots} -np {slots}"
    return Server("llama-server", f"http://127.0.0.1:{port}", proc, log, shown)


async def stream_one(session: aiohttp.ClientSession, server: Server, i: int, max_tokens: int,
                     extra: dict[str, Any]) -> int:
    body = {"model": "smollm2", "messages": user(i), "max_tokens": max_tokens,
            "temperature": 0.7, "seed": i, "logit_bias": NO_END, "stream": True,
            "stream_options": {"include_usage": True}, **extra}
    tokens = 0
    async with session.post(server.url + "/v1/chat/completions", json=body) as resp:
        if resp.status != 200:
            raise RuntimeError(f"{server.name}: HTTP {resp.status}: {await resp.text()}")
        async for raw in resp.content:
            line = raw.strip()
            if line.startswith(b"data:") and line[5:].strip() not in (b"", b"[DONE]"):
                obj = json.loads(line[5:])
                if obj.get("usage"):
                    tokens = obj["usage"]["completion_tokens"]
    return tokens


async def level(server: Server, conc: int, rounds: int, max_tokens: int,
                extra: dict[str, Any]) -> float:
    timeout = aiohttp.ClientTimeout(total=1800)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=True),
                                     timeout=timeout) as s:
        async def client(c: int) -> int:
            return sum([await stream_one(s, server, c * rounds + r, max_tokens, extra)
                        for r in range(rounds)])

        t0 = time.perf_counter()
        tokens = sum(await asyncio.gather(*(client(c) for c in range(conc))))
        return tokens / (time.perf_counter() - t0)


async def main_async(args: argparse.Namespace) -> list[str]:
    from manxue.engine.default_model import default_model_path

    model = default_model_path()
    t0 = time.perf_counter()
    runs: dict[tuple[str, int], list[float]] = {}
    shapes: dict[tuple[str, int], float] = {}
    with tempfile.TemporaryDirectory(prefix="manxue-bench-") as tmp:
        env = server_env("passive")
        servers = [start_manxue(model, args.threads, Path(tmp), env),
                   start_llama_server(Path(args.llama_server), model, args.threads, 8, Path(tmp), env)]
        with started(servers):
            for s in servers:
                await wait_ready(s)
                await level(s, 1, 1, 16, {})
            for rep in range(args.repeats):
                for conc in (1, 8):
                    for s in servers:
                        rate = await level(s, conc, args.rounds, args.max_tokens, {})
                        runs.setdefault((s.name, conc), []).append(rate)
                        print(f"repeat {rep + 1}: {s.name:12} c={conc}: {rate:6.1f} tok/s "
                              f"(load {loadavg().split()[0]})", flush=True)
                    for name, extra in SHAPES.items():
                        rate = await level(servers[0], conc, args.rounds, args.max_tokens, extra)
                        shapes[(name, conc)] = max(shapes.get((name, conc), 0.0), rate)
                        print(f"repeat {rep + 1}: manxue {name:16} c={conc}: {rate:6.1f} tok/s",
                              flush=True)
    return render(args, servers, runs, shapes, (time.perf_counter() - t0) / 60)


def render(args: argparse.Namespace, servers: list[Server],
           runs: dict[tuple[str, int], list[float]], shapes: dict[tuple[str, int], float],
           minutes: float) -> list[str]:
    lines = [
        "# Local engine against llama.cpp's own server",
        "",
        f"`python benchmarks/engine_vs_llama_server.py --llama-server PATH --threads "
        f"{args.threads} --repeats {args.repeats}`, {minutes:.0f} min, "
        f"{time.strftime('%Y-%m-%d')}. SmolLM2-135M-Instruct Q4_1, {args.threads} threads each, "
        f"streamed {args.max_tokens}-token answers (end tokens masked), {args.rounds} requests per "
        "client back to back (a new connection per request: llama-server closes streamed "
        "ones), servers alternated: the best of the repeats, and the median of each repeat's "
        "ratio (the two servers run back to back in a repeat).",
        "",
        "| concurrency | manxue tok/s (best) | llama-server tok/s (best) | best / best "
        "| each repeat's ratio | median ratio |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for conc in (1, 8):
        mine, theirs = runs.get(("manxue", conc), []), runs.get(("llama-server", conc), [])
        if not mine or not theirs:
            lines.append(f"| {conc} | - | - | - | - | - |")
            continue
        ratios = [a / b for a, b in zip(mine, theirs, strict=True)]
        lines.append(f"| {conc} | {max(mine):.1f} | {max(theirs):.1f} | "
                     f"{max(mine) / max(theirs):.0%} | {', '.join(f'{r:.0%}' for r in ratios)} | "
                     f"{statistics.median(ratios):.0%} |")
    lines += ["", "## What constrained sampling costs (manxue)", "",
              "| concurrency | plain tok/s | json_schema tok/s | forced tool call tok/s | "
              "json_schema / plain | tool call / plain |", "|---:|---:|---:|---:|---:|---:|"]
    for conc in (1, 8):
        p = shapes.get(("plain", conc), 0.0)
        j = shapes.get(("json_schema", conc), 0.0)
        t = shapes.get(("forced tool call", conc), 0.0)
        lines.append(f"| {conc} | {p:.1f} | {j:.1f} | {t:.1f} | {j / p:.0%} | {t / p:.0%} |"
                     if p else f"| {conc} | - | - | - | - | - |")
    lines += ["", "Servers:", ""] + [f"- {s.name}: `{s.command}`" for s in servers]
    lines += ["", "Machine: " + ", ".join(f"{k} {v}" for k, v in machine().items()) +
              "; shared with other work, so compare the ratios.", ""]
    return lines


def load_args(ap: argparse.ArgumentParser, repeats: int) -> argparse.Namespace:
    """The load options both engine benchmarks take, parsed."""
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=repeats)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=128)
    return ap.parse_args()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--llama-server", required=True, help="path of the llama-server binary")
    write_doc(OUT, asyncio.run(main_async(load_args(ap, 2))), ROOT)


if __name__ == "__main__":
    main()
