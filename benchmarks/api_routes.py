"""What each API format costs through the gateway, against chat completions on the same run.

    python benchmarks/api_routes.py [--duration 6] [--long-chunks 100]

One `manxue serve` (one worker pinned to CPU 0, metering off: benchmarks/metering.py measures
that) in front of the DeepSeek emulator; wrk (CPU 1, with the emulator) sends the same small
request in each format: OpenAI chat, Anthropic Messages, OpenAI Responses, text completions and
embeddings, whole and streamed, at concurrency 1 and 50; then the streamed formats again with
an answer of `--long-chunks` deltas (a second emulator and gateway), where the formats' fixed
per-answer events weigh less and their per-delta cost shows. Each cell alternates chat and the
format `--repeats` times and reports the medians of the format's RPS over chat's, and of the
gateway's CPU time per request (chat's over the format's: what the format costs the gateway,
steadier than RPS on a shared machine). Needs `wrk`. Writes docs/benchmarks/api-routes.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from loadgen import (
    BODY,
    Result,
    cpu_seconds,
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
LONG_WORDS = 200
"""Words in the long rows' prompt; the emulator echoes it back in `--long-chunks` deltas."""
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
    ap.add_argument("--duration", type=float, default=2.0, help="seconds per measurement")
    ap.add_argument("--repeats", type=int, default=7, help="chat / format pairs per cell")
    ap.add_argument("--long-chunks", type=int, default=100,
                    help="content deltas of the long streamed answers (0: no long rows)")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk")
    tmp = Path(tempfile.mkdtemp(prefix="manxue-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    rows: list[Row] = []
    try:
        gateway, gw = _pair(tmp, procs, 3)
        for name, (path, body) in ROUTES.items():
            for stream in (False, True):
                if stream and name == "embeddings":
                    continue
                for conc in (1, 50):
                    rows.append(_row(Row(name, stream, conc, 3, []), gateway.pid, gw, path, body,
                                     BODY, args, tmp))
        if args.long_chunks:
            gateway, gw = _pair(tmp, procs, args.long_chunks)
            text = " ".join(["hello benchmark"] * (LONG_WORDS // 2))
            chat_body = BODY.replace("hello benchmark", text)
            for name, (path, body) in ROUTES.items():
                if name != "embeddings":
                    rows.append(_row(Row(name, True, 50, args.long_chunks, []), gateway.pid, gw,
                                     path, body.replace("hello benchmark", text), chat_body,
                                     args, tmp))
    finally:
        stop_all(procs, tmp)
    write_doc(OUT, render(rows, args.duration, args.repeats), ROOT)


def _pair(tmp: Path, procs: list[subprocess.Popen[bytes]], chunks: int
          ) -> tuple[subprocess.Popen[bytes], str]:
    """An emulator streaming `chunks` deltas per answer and a gateway before it, warmed up."""
    up_port, gw_port = free_port(), free_port()
    gateway = emulator_and_gateway(tmp, up_port, gw_port, procs, chunks)
    gw = f"http://127.0.0.1:{gw_port}"
    wait_http(f"http://127.0.0.1:{up_port}/v1/models")
    wait_http(gw + "/health")
    wrk(gw, 10, 2, False, tmp)  # warm up
    return gateway, gw


def _row(row: Row, pid: int, gw: str, path: str, body: str, chat_body: str,
         args: argparse.Namespace, tmp: Path) -> Row:
    """Alternate chat and the format `args.repeats` times on one gateway, each pair in the
    other order than the last (a load that drifts during a pair then favours neither)."""
    for k in range(args.repeats):
        def chat() -> Cell:
            return measured(pid, gw, row.conc, args.duration, row.stream, tmp, body=chat_body)

        def other() -> Cell:
            return measured(pid, gw, row.conc, args.duration, row.stream, tmp, path=path,
                            body=body)
        if k % 2:
            o = other()
            row.pairs.append((chat(), o))
        else:
            c = chat()
            row.pairs.append((c, other()))
    print(f"{row.name:20} stream={row.stream!s:5} c={row.conc:2} deltas={row.chunks:3}: "
          f"RPS {row.rps_ratio:.0%}, CPU per request {row.cpu_ratio:.0%} of chat's", flush=True)
    return row


@dataclass
class Cell:
    result: Result
    cpu_us: float   # gateway CPU time per request


@dataclass
class Row:
    name: str
    stream: bool
    conc: int
    chunks: int
    """Content deltas of a streamed answer."""
    pairs: list[tuple[Cell, Cell]]

    @property
    def rps_ratio(self) -> float:
        return statistics.median(o.result.rps / c.result.rps for c, o in self.pairs)

    @property
    def cpu_ratio(self) -> float:
        """Chat's CPU per request over the format's (≥ 1: the format costs no more)."""
        return statistics.median(c.cpu_us / o.cpu_us for c, o in self.pairs)

    def median(self, pick: Callable[[tuple[Cell, Cell]], float]) -> float:
        return statistics.median(pick(p) for p in self.pairs)


def measured(pid: int, url: str, conc: int, seconds: float, stream: bool, tmp: Path,
             path: str = "/v1/chat/completions", body: str = BODY) -> Cell:
    before = cpu_seconds(pid)
    r = wrk(url, conc, seconds, stream, tmp, path=path, body=body)
    used = cpu_seconds(pid) - before
    return Cell(r, 1e6 * used / max(1.0, r.rps * round(seconds)))


def render(rows: list[Row], duration: float, repeats: int) -> list[str]:
    lines = [
        "# API formats through the gateway",
        "",
        "Measured by `python benchmarks/api_routes.py` in one run: one `manxue serve` worker "
        "(metering off) in front of the DeepSeek emulator; the same small request in each "
        f"format, alternated with chat completions {repeats} times on the same gateway "
        f"({duration:g} s each, every other pair format first; the gateway on CPU 0, wrk and "
        "the emulator on CPU 1). Each "
        "figure is the median over the pairs: the format's RPS over chat's, and chat's "
        "gateway CPU time per request over the format's (what the format costs the gateway; "
        "steadier than RPS on a shared machine). The emulator streams each answer in a given "
        f"number of content deltas: 3 for the short request, {LONG_WORDS // 2} times "
        "'hello benchmark' echoed back for the long rows.",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, {time.strftime('%Y-%m-%d')}. Chat's request: `{BODY % ''}`.",
        "",
        "| format | mode | deltas | concurrency | chat RPS | format RPS | RPS format / chat "
        "| chat CPU µs/req | format CPU µs/req | CPU chat / format | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        errors = sum(c.result.errors + o.result.errors for c, o in r.pairs)
        lines.append(
            f"| {r.name} | {'stream' if r.stream else 'whole'} | "
            f"{r.chunks if r.stream else '–'} | {r.conc} | "
            f"{r.median(lambda p: p[0].result.rps):,.0f} | {r.median(lambda p: p[1].result.rps):,.0f} | "
            f"{r.rps_ratio:.0%} | {r.median(lambda p: p[0].cpu_us):,.0f} | "
            f"{r.median(lambda p: p[1].cpu_us):,.0f} | {r.cpu_ratio:.0%} | {errors} |")
    lines += ["", "Target: every format within 10% of chat completions (≥ 90%). Text completions "
              "are relayed as the upstream sends them (nothing translated): their distance "
              "from 100% is this machine's noise in the same run.", ""]
    return lines


if __name__ == "__main__":
    main()
