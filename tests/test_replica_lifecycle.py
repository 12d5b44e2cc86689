"""A replica's life behind a load balancer: on SIGTERM it drains (/ready answers 503 while it
still serves, for `drain_seconds`), then exits 0; /ready is 503 while Redis or the database
cannot be reached, and ready again once they are back."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.accounting.servers import free_port
from tests.helpers import wait_until
from tests.test_cli_serve import _config, _start


def test_sigterm_drains_then_exits(tmp_path: Path, upstream) -> None:
    cfg = _config(tmp_path, upstream, f'data_dir = "{tmp_path / "data"}"\n'
                                      "[server]\ndrain_seconds = 1.5\n")
    proc, port = _start("--config", str(cfg))
    base = f"http://127.0.0.1:{port}"
    try:
        assert httpx.get(base + "/ready", timeout=5).status_code == 200
        proc.send_signal(signal.SIGTERM)
        wait_until(lambda: httpx.get(base + "/ready", timeout=5).status_code == 503,
                   what="/ready says draining")
        assert httpx.get(base + "/ready", timeout=5).json()["status"] == "draining"
        served = httpx.post(base + "/v1/chat/completions", timeout=10, json={
            "model": "deepseek-chat", "messages": [{"role": "user", "content": "still there?"}]})
        assert served.status_code == 200  # draining still serves what arrives
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert "draining" in out and "manxue stopped" in out


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_ready_follows_redis(make_gateway, upstream, tmp_path: Path) -> None:
    from tests.helpers import deployment

    port = free_port()

    def redis() -> subprocess.Popen[bytes]:
        p = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: _answers(port), what="redis-server is up")
        return p

    server = redis()
    try:
        gw = make_gateway([deployment(upstream, "primary")],
                          redis_url=f"redis://127.0.0.1:{port}/0")
        assert httpx.get(gw.url + "/ready", timeout=10).status_code == 200
        server.terminate()
        server.wait(10)
        wait_until(lambda: httpx.get(gw.url + "/ready", timeout=10).status_code == 503,
                   what="not ready without Redis")  # /ready asks at most once a second
        r = httpx.get(gw.url + "/ready", timeout=10)
        assert r.status_code == 503 and "Redis is unreachable" in r.json()["message"]
        server = redis()
        wait_until(lambda: httpx.get(gw.url + "/ready", timeout=10).status_code == 200,
                   what="ready again")
    finally:
        server.kill()
        server.wait(10)


def _answers(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        time.sleep(0.05)
        return False
