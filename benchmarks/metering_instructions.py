"""Metering's cost in machine instructions: the same load through a gateway with metering off
and one with it on, each run under valgrind's callgrind, which counts the instructions the
gateway process executes (all threads: the event loop, the ledger flusher, the workers).

    python benchmarks/metering_instructions.py [--seconds 30] [--connections 8]

Needs `valgrind` and `wrk`. A count of instructions does not move with the shared host's
load the way a time does, so this is the figure to compare two versions of the code by; it
misses what instructions do not show (cache misses, the scheduler), which
benchmarks/metering.py measures in time. Under valgrind a gateway runs ~50× slower, so the
flusher is told to flush every 250 rows (not every 0.25 s) and keys are reloaded every 60 s:
both then happen about as often per request as at full speed. Counting starts after a warm-up
and covers `--seconds` of load. Writes docs/benchmarks/metering-instructions.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from loadgen import BODY, free_port, pinned, wait_http, write_doc
from metering import config

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "benchmarks" / "metering-instructions.md"
SLOW_FLUSH = "[billing]\nflush_interval = 1000\nflush_batch = 250\nkey_refresh_interval = 60\n"


def count(cfg: Path, script: Path, env: dict[str, str], seconds: int, connections: int,
          tmp: Path, name: str) -> tuple[int, int]:
    """(requests served, instructions executed) while counting."""
    port = free_port()
    out = tmp / f"callgrind-{name}.out"
    gw = subprocess.Popen(["valgrind", "--tool=callgrind", "--instr-atstart=no",
                           f"--callgrind-out-file={out}", sys.executable, "-m", "manxue", "serve",
                           "--config", str(cfg), "--port", str(port)],
                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", timeout=600)
        url = f"http://127.0.0.1:{port}/v1/chat/completions"

        def load(secs: int) -> str:
            return subprocess.run(pinned(1, ["wrk", "-t1", f"-c{connections}", f"-d{secs}s", "-s",
                                             str(script), url]),
                                  capture_output=True, text=True, check=True).stdout

        load(5)  # warm-up: imports done, caches filled, the ledger's first pages written
        subprocess.run(["callgrind_control", "-i", "on", str(gw.pid)], capture_output=True, check=True)
        report = load(seconds)
        time.sleep(1.0)  # the requests still in flight finish inside the window
        subprocess.run(["callgrind_control", "-i", "off", str(gw.pid)], capture_output=True, check=True)
        if "Non-2xx" in report:
            raise RuntimeError(f"{name}: the gateway answered with errors:\n{report}")
        served = int(re.search(r"(\d+) requests in", report).group(1))  # type: ignore[union-attr]
    finally:
        gw.send_signal(2)
        gw.wait(timeout=300)
    total = 0
    for f in tmp.glob(f"callgrind-{name}.out*"):
        for line in f.read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                total = max(total, int(line.split()[1]))
    return served, total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=30, help="seconds of counted load per gateway")
    ap.add_argument("--connections", type=int, default=8)
    args = ap.parse_args()
    for tool in ("valgrind", "callgrind_control", "wrk"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not installed: apt-get install valgrind wrk")
    tmp = Path(tempfile.mkdtemp(prefix="manxue-instr-"))
    env = {**os.environ, "MANXUE_DATA_DIR": str(tmp / "cli"), "PYTHONHASHSEED": "0"}
    up = free_port()
    emu = subprocess.Popen(pinned(1, [sys.executable, "-m", "manxue.testing.deepseek_emulator",
                                      "--port", str(up)]), stderr=subprocess.DEVNULL)
    try:
        off = config(tmp, "off", up, metering=False)
        on = config(tmp, "on", up, metering=True)
        on.write_text(on.read_text().replace("[billing]\n", SLOW_FLUSH))
        key = json.loads(subprocess.run(
            [sys.executable, "-m", "manxue", "keys", "create", "--tenant", "bench", "--balance",
             "1000000", "--rpm", "100000000", "--json", "--config", str(on)],
            capture_output=True, text=True, check=True, env=env).stdout)["key"]
        script = tmp / "post.lua"
        script.write_text('wrk.method = "POST"\n' f"wrk.body = '{BODY % ''}'\n"
                          'wrk.headers["Content-Type"] = "application/json"\n'
                          f'wrk.headers["Authorization"] = "Bearer {key}"\n')
        wait_http(f"http://127.0.0.1:{up}/v1/models")
        got = {}
        for name, cfg in (("off", off), ("on", on)):
            got[name] = count(cfg, script, env, args.seconds, args.connections, tmp, name)
            served, total = got[name]
            print(f"{name}: {served} requests, {total / served / 1000:.1f} k instructions per request",
                  flush=True)
        report(got, args)
    finally:
        emu.send_signal(2)
        emu.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


def report(got: dict[str, tuple[int, int]], args: argparse.Namespace) -> None:
    per = {name: total / served for name, (served, total) in got.items()}
    lines = [
        "# Metering cost in instructions",
        "",
        "Measured by `python benchmarks/metering_instructions.py`: a non-streaming wrk load "
        f"({args.connections} connections) through a gateway with metering off and one with it "
        "on, each under valgrind's callgrind, counting every instruction the gateway process "
        f"executed during {args.seconds} s of load after a warm-up. Unlike a time, the count does "
        "not move with the shared host's load; it does not see cache misses or scheduling, which "
        "[metering.md](metering.md) measures in time.",
        "",
        f"Machine: {platform.machine()}, Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d')}.",
        "",
        "| gateway | requests counted | instructions per request |",
        "|---|---|---|",
    ]
    for name, (served, _) in got.items():
        lines.append(f"| metering {name} | {served:,} | {per[name] / 1000:,.1f} k |")
    lines += [
        "",
        f"Metering adds **{(per['on'] - per['off']) / 1000:,.1f} k instructions per request**: off "
        f"executes **{per['off'] / per['on']:.1%}** of what on does, the throughput ratio a "
        "CPU-bound gateway would show if every instruction cost the same.",
        "",
    ]
    write_doc(OUT, lines, ROOT)


if __name__ == "__main__":
    main()
