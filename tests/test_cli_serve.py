"""`manxue serve` as a user runs it: a real process on a real port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import Upstream


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(*args: str) -> tuple[subprocess.Popen[str], int]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "manxue", "serve", "--port", str(port), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc, port
        except httpx.TransportError:
            time.sleep(0.1)
        if proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError("server did not start: " + (proc.stdout.read() if proc.stdout else ""))


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out


def _config(tmp_path: Path, up: Upstream, extra: str = "") -> Path:
    cfg = tmp_path / "manxue.toml"
    cfg.write_text(f"""{extra}
[[deployments]]
name = "emu"
model = "deepseek-chat"
base_url = "{up.url}"
""")
    return cfg


def test_serve_with_config_routes_requests(tmp_path, upstream):
    proc, port = _start("--config", str(_config(tmp_path, upstream)))
    try:
        r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions",
                       json={"model": "deepseek-chat", "messages": [{"role": "user", "content": "yo"}]})
        assert r.json()["choices"][0]["message"]["content"] == "You said: yo"
        assert httpx.get(f"http://127.0.0.1:{port}/ready").status_code == 200
    finally:
        out = _stop(proc)
    assert "deployment 'emu'" in out and f"listening on http://127.0.0.1:{port}" in out


def test_serve_with_workers(tmp_path, upstream):
    proc, port = _start("--config", str(_config(tmp_path, upstream)), "--workers", "2")
    try:
        for _ in range(20):
            r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions",
                           json={"model": "deepseek-chat", "messages": [{"role": "user", "content": "x"}]})
            assert r.status_code == 200
    finally:
        _stop(proc)
    assert proc.returncode is not None


def test_offline_refuses_cloud_deployments(tmp_path, upstream):
    cfg = _config(tmp_path, upstream)
    r = subprocess.run([sys.executable, "-m", "manxue", "serve", "--offline", "--config", str(cfg)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert "offline mode refuses non-local deployments: emu" in r.stderr


def test_bad_config_exits_with_message(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[router]\nstrategy = "coin-flip"\n')
    r = subprocess.run([sys.executable, "-m", "manxue", "serve", "--config", str(cfg)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert "router.strategy" in r.stderr


@pytest.mark.parametrize("args", [["--help"], ["serve", "--help"], ["--version"]])
def test_help_reads_like_a_product(args):
    r = subprocess.run([sys.executable, "-m", "manxue", *args], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0
    assert "manxue" in r.stdout.lower() or "--port" in r.stdout
