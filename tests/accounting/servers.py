"""Start `manxue serve` as a real process for tests that kill it or run several at once."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(path: Path, upstream_url: str, *, data_dir: Path, extra: str = "",
                 flush_interval: float = 0.2) -> Path:
    from tests.accounting.conftest import PRICE_LIST, PRICES_TOML

    prices = path.with_name("prices.toml")
    prices.write_text(PRICES_TOML)
    path.write_text(f"""data_dir = "{data_dir}"
{extra}
[billing]
flush_interval = {flush_interval}
key_refresh_interval = 0.2
default_price_list = "{PRICE_LIST}"
price_lists = ["{prices}"]

[[deployments]]
name = "emu"
model = "deepseek-chat"
base_url = "{upstream_url}"
""")
    return path


def start_server(config: Path, port: int, env: dict[str, str] | None = None,
                 log: Path | None = None) -> subprocess.Popen[bytes]:
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "manxue", "serve", "--config", str(config), "--port", str(port)],
        stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"manxue serve exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("manxue serve did not start")


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "manxue", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})}, check=True)
