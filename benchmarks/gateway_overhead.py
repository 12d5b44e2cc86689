"""Gateway overhead: the same load straight to an emulated upstream and through manxue.

    python benchmarks/gateway_overhead.py [--duration 8] [--rss-requests 100000]

Needs `wrk` (Debian package `wrk`). The gateway runs as one worker pinned to CPU 0; the
upstream emulator and wrk share CPU 1, so "direct" is bounded by that core and the ratio
shows what the gateway costs. Writes docs/benchmarks/gateway.md. The other API formats are
measured against chat completions by benchmarks/api_routes.py.
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
    Result,
    emulator_and_gateway,
    free_port,
    pinned,
    rss_mib,
    stop_all,
    wait_http,
    wrk,
)

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "benchmarks" / "gateway.md"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=8.0, help="seconds per measurement")
    ap.add_argument("--rss-requests", type=int, default=100_000)
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk")
    tmp = Path(tempfile.mkdtemp(prefix="manxue-bench-"))
    up_port, gw_port, relay_port = free_port(), free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        # the gateway alone; benchmarks/metering.py measures what metering adds
        gw = emulator_and_gateway(tmp, up_port, gw_port, procs)
        direct, through = f"http://127.0.0.1:{up_port}", f"http://127.0.0.1:{gw_port}"
        relay = f"http://127.0.0.1:{relay_port}"
        procs.append(subprocess.Popen(pinned(0, [sys.executable, str(ROOT / "benchmarks" / "bare_relay.py"),
                                                 direct, str(relay_port)])))
        wait_http(direct + "/v1/models")
        wait_http(through + "/health")
        wait_http(relay + "/")
        wrk(through, 10, 2, False, tmp)  # warm up
        wrk(through, 10, 2, True, tmp)
        rows = []
        for stream in (False, True):
            for conc in (1, 50):
                d = wrk(direct, conc, args.duration, stream, tmp)
                r = wrk(relay, conc, args.duration, stream, tmp)
                g = wrk(through, conc, args.duration, stream, tmp)
                rows.append((stream, conc, d, r, g))
                print(f"stream={stream} c={conc}: direct {d.rps:.0f} rps p50 {d.p50_ms:.3f} ms | "
                      f"bare relay {r.rps:.0f} rps | manxue {g.rps:.0f} rps p50 {g.p50_ms:.3f} ms "
                      f"({g.rps / d.rps:.0%} of direct, {g.rps / r.rps:.0%} of the bare relay)", flush=True)
        rss = [rss_mib(gw.pid)]
        rss_rate = rows[1][4].rps or 1000
        rss_seconds = args.rss_requests / rss_rate
        steps = 5
        served = 0
        for _ in range(steps):
            r = wrk(through, 50, rss_seconds / steps, False, tmp)
            served += int(r.rps * rss_seconds / steps)
            rss.append(rss_mib(gw.pid))
        print(f"RSS over ~{served} requests: " + " → ".join(f"{x:.1f}" for x in rss) + " MiB", flush=True)
        write_report(rows, rss, served, args.duration)
    finally:
        stop_all(procs, tmp)


def write_report(rows: list[tuple[bool, int, Result, Result, Result]], rss: list[float], served: int,
                 duration: float) -> None:
    lines = [
        "# Gateway overhead",
        "",
        "Measured by `python benchmarks/gateway_overhead.py` in one run: the same wrk load straight "
        "to the DeepSeek emulator (`python -m manxue.testing.deepseek_emulator`) and through "
        "`manxue serve` (one worker, metering off: see metering.md for its cost), with the "
        "smallest aiohttp relay (`benchmarks/bare_relay.py`: no "
        "validation, routing, metrics or resilience) as the reference for what Python can do here. "
        "The gateway and the relay are pinned to CPU 0; the emulator and wrk share "
        f"CPU 1. {duration:g} s per cell. Chat completions only: what the other API formats "
        "(Messages, Responses, text completions, embeddings) cost against chat is in "
        "api-routes.md (`python benchmarks/api_routes.py`).",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d')}.",
        "",
        "| mode | concurrency | direct RPS | bare relay RPS | manxue RPS | manxue / direct "
        "| manxue / bare relay | direct p50 ms | manxue p50 ms | added p50 ms | direct p99 ms "
        "| manxue p99 ms | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for stream, conc, d, r, g in rows:
        lines.append(
            f"| {'stream' if stream else 'non-stream'} | {conc} | {d.rps:,.0f} | {r.rps:,.0f} | "
            f"{g.rps:,.0f} | {g.rps / d.rps:.0%} | {g.rps / r.rps:.0%} | {d.p50_ms:.3f} | "
            f"{g.p50_ms:.3f} | {g.p50_ms - d.p50_ms:+.3f} | {d.p99_ms:.3f} | {g.p99_ms:.3f} | "
            f"{d.errors + r.errors + g.errors} |")
    growth = (rss[-1] - rss[1]) / rss[1] if len(rss) > 2 and rss[1] else 0.0
    lines += [
        "",
        f"Gateway RSS over ~{served:,} non-streaming requests at concurrency 50, sampled after the "
        "warm-up and then every fifth of the run: " + " → ".join(f"{x:.1f}" for x in rss) + " MiB "
        f"({growth:+.1%} from the first loaded sample to the last).",
        "",
        "Targets: added p50 ≤ 0.5 ms at concurrency 1; manxue ≥ 50% of direct RPS at concurrency 50; "
        "RSS flat within ±10%.",
        "",
    ]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines))
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
