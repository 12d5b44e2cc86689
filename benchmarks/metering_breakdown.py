"""Where metering's cost goes: gateways side by side on one core, each with one more part of
metering switched off, under the same load at the same time.

    python benchmarks/metering_breakdown.py [--rounds 9] [--duration 3] [--concurrency 12]

All gateways are pinned to CPU 0 and loaded together (the DeepSeek emulator and the wrk
processes on CPU 1), so the shared host's drift falls on all of them alike and the throughput
ratios are ratios of CPU cost per request. A part is switched off by replacing its function
at start-up (`python -c PATCH; manxue serve ...`), which is why this is a benchmark and not a
configuration. Writes docs/benchmarks/metering-breakdown.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from loadgen import Result, cpu_seconds, free_port, pinned, stop_all, wait_http, wrk
from metering import config

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "benchmarks" / "metering-breakdown.md"

# Each patch replaces one part with what it costs nothing to do instead.
NO_ROW = """
import manxue.accounting.meter as M
def record(self, o):  # settle the reservation and spending only: no ledger row at all
    t = o.ctx.ticket
    if isinstance(t, M.Ticket) and t.key is not None:
        self._settle_now(t.key.id, o.ctx.request_id, 0, 0, t.limits)
M.Meter.record = record
"""
NO_SQL = "import manxue.accounting.ledger as L\nL.append_rows = lambda engine, rows: len(rows)\n"
NO_JOURNAL = "import manxue.accounting.journal as J\nJ.Journal.append = lambda self, row: None\n"
NO_ADMISSION = """
import time, manxue.accounting.meter as M
async def admit(self, key, req, raw, request_id, body_bytes):
    now = time.time()
    return M.Ticket(key, M._NO_LIMITS, 0, self.prices.lookup_at(self._default_list, req.model, now), raw, now)
M.Meter.admit = admit
M.Meter.record = lambda self, outcome: None
"""
NO_KEY_LOOKUP = ("import manxue.accounting.meter as M\n"
                 "M.Meter.authenticate = lambda self, a, k, r: next(iter(self.keys.by_hash.values()))\n")

VARIANTS: list[tuple[str, bool, str]] = [
    ("metering off", False, ""),
    ("metering on", True, ""),
    ("on, no SQL insert (rows still journaled)", True, NO_SQL),
    ("on, no journal copy and no SQL insert", True, NO_SQL + NO_JOURNAL),
    ("on, no ledger row at all (limits and balance still settled)", True, NO_ROW),
    ("on, no admission or settlement either", True, NO_ADMISSION),
    ("on, and a fixed key instead of the key lookup", True, NO_ADMISSION + NO_KEY_LOOKUP),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--concurrency", type=int, default=12, help="connections per gateway")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk")
    tmp = Path(tempfile.mkdtemp(prefix="manxue-breakdown-"))
    env = {**os.environ, "MANXUE_DATA_DIR": str(tmp / "cli")}
    up = free_port()
    procs = [subprocess.Popen(pinned(1, [sys.executable, "-m", "manxue.testing.deepseek_emulator",
                                         "--port", str(up)]), stderr=subprocess.DEVNULL)]
    gateways: list[tuple[str, str, subprocess.Popen[bytes], dict[str, str], Path]] = []
    try:
        key = ""
        for i, (label, metering, patch) in enumerate(VARIANTS):
            cfg = config(tmp, f"v{i}", up, metering=metering)
            if metering:
                key = json.loads(subprocess.run(
                    [sys.executable, "-m", "manxue", "keys", "create", "--tenant", "bench", "--balance",
                     "1000000", "--rpm", "100000000", "--json", "--config", str(cfg)],
                    capture_output=True, text=True, check=True, env=env).stdout)["key"]
            port = free_port()
            run = patch + "\nimport sys\nfrom manxue.cli import main\nsys.argv[0] = 'manxue'\nmain()\n"
            p = subprocess.Popen(pinned(0, [sys.executable, "-c", run, "serve", "--config", str(cfg),
                                            "--port", str(port)]), env=env)
            procs.append(p)
            scratch = tmp / f"wrk{i}"
            scratch.mkdir()
            gateways.append((label, f"http://127.0.0.1:{port}", p, {"Authorization": f"Bearer {key}"},
                             scratch))
        wait_http(f"http://127.0.0.1:{up}/v1/models")
        for _, url, _, auth, scratch in gateways:
            wait_http(url + "/health")
            wrk(url, 10, 2, False, scratch, auth)
        rps: dict[str, list[float]] = {g[0]: [] for g in gateways}
        cpu: dict[str, list[float]] = {g[0]: [] for g in gateways}
        errors = 0
        with ThreadPoolExecutor(len(gateways)) as pool:
            for _ in range(args.rounds):
                before = {label: cpu_seconds(p.pid) for label, _, p, _, _ in gateways}
                futures = {label: pool.submit(wrk, url, args.concurrency, args.duration, False, scratch, auth)
                           for label, url, _, auth, scratch in gateways}
                results: dict[str, Result] = {label: f.result() for label, f in futures.items()}
                time.sleep(0.2)
                for label, _, p, _, _ in gateways:
                    r = results[label]
                    rps[label].append(r.rps)
                    served = max(1.0, r.rps * round(args.duration))
                    cpu[label].append((cpu_seconds(p.pid) - before[label]) / served * 1e6)
                    errors += r.errors
                print("  ".join(f"{r.rps:6.0f}" for r in results.values()), flush=True)
        report(gateways, rps, cpu, errors, args)
    finally:
        stop_all(procs, tmp)


def report(gateways: list[tuple[str, str, subprocess.Popen[bytes], dict[str, str], Path]],
           rps: dict[str, list[float]], cpu: dict[str, list[float]], errors: int,
           args: argparse.Namespace) -> None:
    off = statistics.median(rps["metering off"])
    lines = [
        "# Where metering's cost goes",
        "",
        f"Measured by `python benchmarks/metering_breakdown.py`: {len(gateways)} gateways pinned "
        "to one core and loaded at the same time (non-streaming, "
        f"{args.concurrency} connections each, {args.rounds} rounds of {args.duration:g} s), each "
        "with one more part of metering switched off. Loaded together, they share the host's "
        "drift. Seven processes sharing one core also evict each other from the CPU caches, so "
        "the costs here run higher than in [metering.md](metering.md), where two gateways share "
        "it; and a gateway with a busy flusher thread gets a little more of the core than one "
        "without, so the RPS column flatters metering slightly and the CPU column does not.",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d')}. Errors: {errors}.",
        "",
        "| gateway | RPS (median) | vs metering off | gateway CPU µs / request |",
        "|---|---|---|---|",
    ]
    for label, *_ in gateways:
        med = statistics.median(rps[label])
        lines.append(f"| {label} | {med:,.0f} | {med / off:.0%} | {statistics.median(cpu[label]):.0f} |")
    lines.append("")
    OUT.write_text("\n".join(lines))
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
