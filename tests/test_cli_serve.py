"""`manxue serve` as a user runs it: a real process on a real port."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from typer.testing import CliRunner

from manxue.cli import app
from manxue.testing.deepseek_emulator import Behavior
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


# -- every command's --help: an example that names real options, defaults that are shown --


def _walk(cmd: Any = None, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """The root command and every command and group under it, with its words."""
    cmd = cmd or typer.main.get_command(app)
    found = [(path, cmd)]
    for name, sub in sorted(getattr(cmd, "commands", {}).items()):
        found += _walk(sub, (*path, name))
    return found


COMMANDS = dict(_walk())
ROOT = COMMANDS[()]


def test_the_walk_finds_every_command():
    names = {" ".join(path) for path in COMMANDS}
    assert {"", "serve", "models", "usage", "invoice", "prices", "verify", "keys", "keys create",
            "keys list", "keys set", "keys disable", "keys enable", "keys rotate", "keys topup",
            "tenants", "tenants list", "tenants set", "engine", "engine launch", "plan",
            "plan deepseek-day", "plan build-vs-buy", "plan models", "plan hardware",
            "plan calibration"} <= names


def _example(cmd: Any) -> list[str]:
    found = re.search(r"^\s*Example: (manxue .+)$", cmd.help or "", re.M)
    assert found, f"no example in {cmd.name}'s help"
    return shlex.split(found.group(1))


@pytest.mark.parametrize("path", list(COMMANDS), ids=lambda p: " ".join(p) or "manxue")
def test_help_has_an_example_and_shows_defaults_and_flags(path):
    r = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "100"})
    assert r.exit_code == 0, r.output
    text = r.stdout
    assert "Example: manxue" in text
    assert not re.search(r" \.(?=\s|│|$)", text, re.M), text  # "Port to bind ." : eaten markup
    assert "<bool>" not in text and "BOOLEAN" not in text  # a flag takes no value
    cmd = COMMANDS[path]
    written = sum((p.help or "").count("[default:") for p in cmd.params if hasattr(p, "help"))
    assert text.count("[default:") >= written  # none read as rich markup and dropped
    # the example runs this command (or one under it) and names only options it has
    words = _example(cmd)[1:]
    target, reached = ROOT, []
    while words and words[0] in getattr(target, "commands", {}):
        reached.append(words[0])
        target = target.commands[words.pop(0)]
    assert tuple(reached[:len(path)]) == path
    options = {o for p in target.params for o in (*p.opts, *p.secondary_opts)}
    for word in words:
        if word == "--":
            break
        if word.startswith("-"):
            assert word.split("=")[0] in options, (path, word)


def test_invoice_json_help_says_csv_is_the_default():
    text = " ".join(CliRunner().invoke(app, ["invoice", "--help"], env={"COLUMNS": "100"})
                    .stdout.split())
    assert "Print JSON instead of CSV. [default: CSV]" in text


@pytest.mark.parametrize("path", [("plan",), ("plan", "deepseek-day"), ("plan", "models"),
                                  ("plan", "calibration"), ("prices",), ("engine",)],
                         ids=" ".join)
def test_self_contained_examples_run(path):
    r = CliRunner().invoke(app, _example(COMMANDS[path])[1:])
    assert r.exit_code == 0, r.output


# -- exposure, ports and shutdown (fast: billing off, no deployment to load) --

NO_BILLING = "[billing]\nenabled = false\n"


def _bare(tmp_path: Path, extra: str = "") -> Path:
    cfg = tmp_path / "bare.toml"
    cfg.write_text(f'data_dir = "{tmp_path / "data"}"\n{NO_BILLING}{extra}')
    return cfg


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "manxue", "serve", *args], capture_output=True,
                          text=True, timeout=30)


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "error" in line.lower()]


@pytest.mark.parametrize(("args", "extra"), [
    (["--host", "0.0.0.0"], ""),
    (["--host", "::"], ""),
    ([], '[server]\nhost = "0.0.0.0"\n'),
])
def test_open_gateway_off_loopback_is_refused(tmp_path, args, extra):
    cfg = _bare(tmp_path, extra)
    r = _run("--config", str(cfg), "--port", str(_free_port()), *args)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    [line] = r.stderr.strip().splitlines()
    assert line.startswith("error: refusing to serve")
    for hint in ("manxue keys create", "127.0.0.1", "--insecure-open"):
        assert hint in line


@pytest.mark.parametrize("how", ["flag", "config"])
def test_insecure_open_serves_with_a_loud_warning(tmp_path, how):
    cfg = _bare(tmp_path, "[server]\ninsecure_open = true\n" if how == "config" else "")
    proc, port = _start("--config", str(cfg), "--host", "0.0.0.0",
                        *(["--insecure-open"] if how == "flag" else []))
    try:
        r = httpx.get(f"http://127.0.0.1:{port}/v1/models")
        assert r.status_code == 200
    finally:
        out = _stop(proc)
    assert "WARNING" in out and "INSECURE" in out and "anyone who can reach this port" in out
    assert f"listening on http://0.0.0.0:{port}" in out


def test_loopback_without_billing_needs_no_flag(tmp_path):
    proc, port = _start("--config", str(_bare(tmp_path)))
    out = _stop(proc)
    assert "INSECURE" not in out and f"listening on http://127.0.0.1:{port}" in out


@pytest.mark.parametrize("port", ["99999", "0", "-1", "65536", "http"])
def test_port_out_of_range_is_a_cli_error(tmp_path, port):
    r = _run("--config", str(_bare(tmp_path)), "--port", port)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "--port" in r.stderr and "listening" not in r.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_port_in_use_is_one_error_line(tmp_path, workers):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        r = _run("--config", str(_bare(tmp_path)), "--port", str(port), "--workers", workers)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and "listening" not in r.stderr
    assert _error_lines(r.stderr) == [
        f"error: cannot listen on 127.0.0.1:{port}: address already in use; pick another with "
        "--port, or stop the program using it"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_stops_gracefully_on_signals(tmp_path, upstream, sig):
    proc, port = _start("--config", str(_config(tmp_path, upstream)))
    upstream.emu.push(Behavior(first_byte_delay=1.0))
    result: list[httpx.Response] = []

    def slow() -> None:
        result.append(httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions", timeout=30,
            json={"model": "deepseek-chat", "messages": [{"role": "user", "content": "slow"}]}))

    t = threading.Thread(target=slow)
    t.start()
    deadline = time.monotonic() + 10
    while not upstream.emu.received and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(sig)  # the request in flight is answered before the process exits
    t.join(30)
    try:
        out, _ = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    assert result and result[0].status_code == 200, out
    assert proc.returncode == 0 and "manxue stopped" in out and "Traceback" not in out


def test_malformed_http_is_openai_error_json(tmp_path):
    proc, port = _start("--config", str(_bare(tmp_path)))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
            raw = b""
            while chunk := s.recv(65536):
                raw += chunk
    finally:
        _stop(proc)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b" 400 " in head.split(b"\r\n")[0] and b"application/json" in head
    assert json.loads(body)["error"]["code"] == "bad_http_request"
