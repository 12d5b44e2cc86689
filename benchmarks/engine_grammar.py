"""What constrained sampling costs the local engine: plain vs JSON Schema vs a forced tool call.

    python benchmarks/engine_grammar.py [--threads 2] [--repeats 3]

One `manxue serve` with the shipped SmolLM2-135M-Instruct (Q4_1); streamed answers of exactly
--max-tokens tokens in every shape (end tokens masked; the schema's story and the tool's
argument have a minLength the answer cannot reach), so tok/s compares sampling with sampling
and not a shorter answer's larger share of prefill. Concurrency 1 and 8, the shapes alternated
within each repeat; the median of the repeats. Writes docs/benchmarks/engine-grammar.md.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from engine_throughput import machine, server_env, start_manxue, started, wait_ready
from engine_vs_llama_server import SHAPES, level, load_args
from loadgen import write_doc

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "benchmarks" / "engine-grammar.md"


async def main_async(args: argparse.Namespace) -> list[str]:
    from manxue.engine.default_model import default_model_path

    t0 = time.perf_counter()
    rates: dict[tuple[str, int], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="manxue-bench-") as tmp:
        server = start_manxue(default_model_path(), args.threads, Path(tmp), server_env("passive"))
        with started([server]):
            await wait_ready(server)
            await level(server, 1, 1, 16, {})
            for rep in range(args.repeats):
                for conc in (1, 8):
                    for name, extra in SHAPES.items():
                        rate = await level(server, conc, args.rounds, args.max_tokens, extra)
                        rates.setdefault((name, conc), []).append(rate)
                        print(f"repeat {rep + 1}: {name:16} c={conc}: {rate:6.1f} tok/s", flush=True)
    minutes = (time.perf_counter() - t0) / 60
    med = {k: statistics.median(v) for k, v in rates.items()}
    lines = [
        "# What constrained sampling costs the local engine",
        "",
        f"`python benchmarks/engine_grammar.py --threads {args.threads} --repeats {args.repeats}`, "
        f"{minutes:.0f} min, {time.strftime('%Y-%m-%d')}. SmolLM2-135M-Instruct Q4_1, "
        f"{args.threads} threads, streamed answers of exactly {args.max_tokens} tokens in every "
        f"shape, {args.rounds} requests per client back to back, shapes alternated; the median "
        "of the repeats (all values below the table).",
        "",
        "| concurrency | plain tok/s | json_schema tok/s | forced tool call tok/s | "
        "json_schema / plain | tool call / plain |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for conc in (1, 8):
        p, j, t = (med[(name, conc)] for name in ("plain", "json_schema", "forced tool call"))
        lines.append(f"| {conc} | {p:.1f} | {j:.1f} | {t:.1f} | {j / p:.0%} | {t / p:.0%} |")
    lines += ["", "Target: constrained sampling within 10% of plain (≥ 90%).", "",
              "Every repeat (tok/s):", ""]
    lines += [f"- {name}, c={conc}: " + ", ".join(f"{r:.1f}" for r in v)
              for (name, conc), v in rates.items()]
    lines += ["", f"Server: `{server.command}`", "",
              "Machine: " + ", ".join(f"{k} {v}" for k, v in machine().items()) +
              "; shared with other work, so compare the ratios.", ""]
    return lines


def main() -> None:
    args = load_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]), 3)
    write_doc(OUT, asyncio.run(main_async(args)), ROOT)


if __name__ == "__main__":
    main()
