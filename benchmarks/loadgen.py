"""Shared pieces of the HTTP benchmarks: ports, CPU pinning, wrk runs, RSS."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

BODY = '{"model":"deepseek-chat","messages":[{"role":"user","content":"hello benchmark"}]%s}'


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def pinned(cpu: int, cmd: list[str]) -> list[str]:
    return ["taskset", "-c", str(cpu), *cmd] if shutil.which("taskset") and os.cpu_count() != 1 else cmd


def wrk(url: str, conc: int, seconds: float, stream: bool, tmp: Path,
        headers: dict[str, str] | None = None, path: str = "/v1/chat/completions",
        body: str = BODY) -> Result:
    """Run wrk (pinned to CPU 1) POSTing a request (a chat one unless `path` and `body`, a
    template with one %s for the stream flag, say otherwise); parse RPS, p50, p99, errors."""
    name = path.strip("/").replace("/", "_")
    script = tmp / f"post_{name}_{int(stream)}_{len(headers or {})}.lua"
    body = body % (',"stream":true' if stream else "")
    extra = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in (headers or {}).items())
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = '{body}'\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        + extra +
        "done = function(summary, latency, requests)\n"
        '  io.write(string.format("P50 %d\\nP99 %d\\n", latency:percentile(50), latency:percentile(99)))\n'
        "end\n")
    cmd = pinned(1, ["wrk", "-t1", f"-c{conc}", f"-d{max(1, round(seconds))}s", "-s", str(script),
                     url + path])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = int(re.search(r"P50 (\d+)", out).group(1)) / 1000  # type: ignore[union-attr]
    p99 = int(re.search(r"P99 (\d+)", out).group(1)) / 1000  # type: ignore[union-attr]
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errs += sum(int(x) for x in m.groups())
    return Result(rps, p50, p99, errs)


def stop_all(procs: list[subprocess.Popen[bytes]], tmp: Path) -> None:
    """Interrupt every process (gracefully, then killed after 10 s) and remove `tmp`."""
    for p in procs:
        p.send_signal(signal.SIGINT)
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
    shutil.rmtree(tmp, ignore_errors=True)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def write_doc(out: Path, lines: list[str], root: Path) -> None:
    """Write a benchmark's Markdown result and say where it went."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print(f"wrote {out.relative_to(root)}")


def emulator_and_gateway(tmp: Path, up_port: int, gw_port: int,
                         procs: list[subprocess.Popen[bytes]], chunks: int = 3) -> subprocess.Popen[bytes]:
    """The DeepSeek emulator on CPU 1 (streaming each answer in `chunks` content chunks) and
    `manxue serve` (metering off: the gateway alone) on CPU 0 in front of it, both appended to
    `procs`; returns the gateway's process."""
    procs.append(subprocess.Popen(pinned(1, [sys.executable, "-m", "manxue.testing.deepseek_emulator",
                                             "--port", str(up_port), "--chunks", str(chunks)])))
    cfg = tmp / f"bench-{gw_port}.toml"
    cfg.write_text(f'data_dir = "{tmp / f"data-{gw_port}"}"\n[server]\nlog_level = "warning"\n'
                   '[billing]\nenabled = false\n[[deployments]]\nname = "emu"\n'
                   f'model = "deepseek-chat"\nbase_url = "http://127.0.0.1:{up_port}"\n')
    gw = subprocess.Popen(pinned(0, [sys.executable, "-m", "manxue", "serve", "--config", str(cfg),
                                     "--port", str(gw_port)]))
    procs.append(gw)
    return gw
