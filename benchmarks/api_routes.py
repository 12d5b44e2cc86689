"""What each API format costs through the gateway, against chat completions on the same run.

    python benchmarks/api_routes.py [--duration 6]

One `manxue serve` (one worker pinned to CPU 0, metering off: benchmarks/metering.py measures
that) in front of the DeepSeek emulator; wrk (CPU 1, with the emulator) sends the same small
request in each format: OpenAI chat, Anthropic Messages, OpenAI Responses, text completions and
embeddings, whole and streamed, at concurrency 1 and 50. Each format's RPS is compared with
chat's measured right before it. Needs `wrk`. Writes docs/benchmarks/api-routes.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from loadgen import (
    BODY,
    Result,
    emulator_and_gateway,
    free_port,
    stop_all,
    wait_http,
    write_doc,
    wrk,
)

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "benchmarks" / "api-routes.md"
ASK = '"content":"hello benchmark"'
ROUTES = {
    "Anthropic Messages": ("/v1/messages", '{"model":"deepseek-chat","max_tokens":64,'
                           '"messages":[{"role":"user",' + ASK + '}]%s}'),
    "OpenAI Responses": ("/v1/responses", '{"model":"deepseek-chat","store":false,'
                         '"input":"hello benchmark"%s}'),
    "text completions": ("/v1/completions", '{"model":"deepseek-chat","prompt":"hello benchmark"%s}'),
    "embeddings": ("/v1/embeddings", '{"model":"deepseek-chat","input":"hello benchmark"%s}'),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=6.0, help="seconds per measurement")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk")
    tmp = Path(tempfile.mkdtemp(prefix="manxue-bench-"))
    up_port, gw_port = free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    rows: list[tuple[str, bool, int, Result, Result]] = []
    try:
        emulator_and_gateway(tmp, up_port, gw_port, procs)
        gw = f"http://127.0.0.1:{gw_port}"
        wait_http(f"http://127.0.0.1:{up_port}/v1/models")
        wait_http(gw + "/health")
        wrk(gw, 10, 2, False, tmp)  # warm up
        for name, (path, body) in ROUTES.items():
            for stream in (False, True):
                if stream and name == "embeddings":
                    continue
                for conc in (1, 50):
                    chat = wrk(gw, conc, args.duration, stream, tmp)
                    other = wrk(gw, conc, args.duration, stream, tmp, path=path, body=body)
                    rows.append((name, stream, conc, chat, other))
                    print(f"{name:20} stream={stream!s:5} c={conc:2}: chat {chat.rps:,.0f} rps, "
                          f"{other.rps:,.0f} rps ({other.rps / chat.rps:.0%})", flush=True)
    finally:
        stop_all(procs, tmp)
    write_doc(OUT, render(rows, args.duration), ROOT)


def render(rows: list[tuple[str, bool, int, Result, Result]], duration: float) -> list[str]:
    lines = [
        "# API formats through the gateway",
        "",
        "Measured by `python benchmarks/api_routes.py` in one run: one `manxue serve` worker "
        "(metering off) in front of the DeepSeek emulator; the same small request in each "
        "format, each compared with chat completions measured just before it on the same "
        f"gateway. {duration:g} s per cell; the gateway on CPU 0, wrk and the emulator on CPU 1.",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, {time.strftime('%Y-%m-%d')}. Chat's request: `{BODY % ''}`.",
        "",
        "| format | mode | concurrency | chat RPS | format RPS | format / chat | chat p50 ms "
        "| format p50 ms | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, stream, conc, chat, other in rows:
        lines.append(f"| {name} | {'stream' if stream else 'whole'} | {conc} | {chat.rps:,.0f} | "
                     f"{other.rps:,.0f} | {other.rps / chat.rps:.0%} | {chat.p50_ms:.3f} | "
                     f"{other.p50_ms:.3f} | {chat.errors + other.errors} |")
    lines += ["", "Target: every format within 10% of chat completions (≥ 90%).", ""]
    return lines


if __name__ == "__main__":
    main()
