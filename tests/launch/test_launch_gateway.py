"""The gateway's admin API, and a launched engine serving chat through a running gateway."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import pytest

from manxue.engine_launch.register import GatewayClient, Registrar
from manxue.testing.loopback import LoopbackServer
from tests.helpers import Upstream
from tests.launch.conftest import ADMIN_KEY, alive, fake_exec, free_port, http, start_gateway

AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}


def _dep(upstream: Upstream, name: str = "emu", **kw: Any) -> dict[str, Any]:
    return {"name": name, "model": "deepseek-chat", "kind": "openai", "base_url": upstream.url,
            "upstream_model": "deepseek-chat", "priority": 0, "tags": {"site": "test"}} | kw


def _chat(gateway_url: str, model: str, text: str = "hi") -> str:
    client = openai.OpenAI(base_url=gateway_url + "/v1", api_key="sk-test", max_retries=0,
                           timeout=20)
    out = client.chat.completions.create(model=model, messages=[{"role": "user", "content": text}])
    return out.choices[0].message.content or ""


def _until(cond: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_admin_api_is_off_without_a_key(admin_gateway: LoopbackServer) -> None:
    r = http.get(admin_gateway.url + "/admin/deployments", headers=AUTH, timeout=5)
    assert r.status_code == 403
    err = r.json()["error"]
    assert err["type"] == "permission_error" and err["code"] == "admin_disabled"
    assert "MANXUE_ADMIN_KEY" in err["message"]


@pytest.mark.parametrize(("headers", "code"), [
    ({}, "missing_admin_key"),
    ({"Authorization": "Bearer wrong"}, "invalid_admin_key"),
    ({"Authorization": f"Basic {ADMIN_KEY}"}, "missing_admin_key"),
])
def test_admin_api_refuses_bad_keys(admin_gateway: LoopbackServer, admin_key: str,
                                    headers: dict[str, str], code: str) -> None:
    for method, path in (("GET", "/admin/deployments"), ("POST", "/admin/deployments"),
                         ("DELETE", "/admin/deployments/x")):
        r = http.request(method, admin_gateway.url + path, headers=headers, json={}, timeout=5)
        assert r.status_code == 401, (method, r.text)
        assert r.json()["error"]["type"] == "authentication_error"
        assert r.json()["error"]["code"] == code


def test_add_route_list_replace_and_remove(admin_gateway: LoopbackServer, admin_key: str,
                                           upstream: Upstream) -> None:
    url = admin_gateway.url + "/admin/deployments"
    assert http.get(admin_gateway.url + "/v1/models", timeout=5).json()["data"] == []

    r = http.post(url, headers=AUTH, json=_dep(upstream), timeout=5)
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "emu" and r.json()["replaced"] is False
    models = http.get(admin_gateway.url + "/v1/models", timeout=5).json()["data"]
    assert [m["id"] for m in models] == ["deepseek-chat"]
    assert _chat(admin_gateway.url, "deepseek-chat")

    listed = http.get(url, headers=AUTH, timeout=5).json()["data"]
    assert [(d["name"], d["base_url"], d["tags"]) for d in listed] == [
        ("emu", upstream.url, {"site": "test"})]
    assert "api_key" not in listed[0]

    r = http.post(url, headers=AUTH, json=_dep(upstream, priority=2), timeout=5)
    assert r.status_code == 409 and r.json()["error"]["code"] == "deployment_exists"
    r = http.post(url + "?replace=true", headers=AUTH, json=_dep(upstream, priority=2),
                      timeout=5)
    assert r.status_code == 201 and r.json()["replaced"] is True and r.json()["priority"] == 2

    assert http.delete(url + "/emu", headers=AUTH, timeout=5).status_code == 200
    r = http.delete(url + "/emu", headers=AUTH, timeout=5)
    assert r.status_code == 404 and r.json()["error"]["code"] == "deployment_not_found"
    assert http.get(admin_gateway.url + "/v1/models", timeout=5).json()["data"] == []
    with pytest.raises(openai.NotFoundError):
        _chat(admin_gateway.url, "deepseek-chat")


@pytest.mark.parametrize(("body", "status", "param"), [
    (b"not json", 400, None),
    (b"[1, 2]", 400, None),
    (b'{"name": "x", "model": "m", "kind": "openai"}', 422, "deployment"),
    (b'{"name": "x", "model": "m", "base_url": "ftp://h"}', 422, "deployment"),
    (b'{"name": "x", "model": "m", "base_url": "http://h", "colour": "red"}', 422, "colour"),
    (b'{"name": "x", "model": "m", "base_url": "http://h", "api_key_env": "NO_SUCH_VAR_42"}',
     422, None),
])
def test_invalid_deployments_are_refused(admin_gateway: LoopbackServer, admin_key: str,
                                         body: bytes, status: int, param: str | None) -> None:
    r = http.post(admin_gateway.url + "/admin/deployments", data=body,
                      headers=AUTH | {"Content-Type": "application/json"}, timeout=5)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error"
    if param == "deployment":
        assert "base_url" in err["message"]
    elif param is not None:
        assert err["param"] == param


def test_multi_worker_gateway_without_a_database_refuses_changes(admin_key: str,
                                                                upstream: Upstream) -> None:
    # one process here, configured as one of two workers, with no database to share changes
    srv = start_gateway(workers=2, billing={"enabled": False})
    try:
        r = http.post(srv.url + "/admin/deployments", headers=AUTH, json=_dep(upstream),
                          timeout=5)
        assert r.status_code == 409 and r.json()["error"]["code"] == "multi_worker"
    finally:
        srv.stop()


def test_launch_registers_serves_through_the_gateway_and_cleans_up(
        admin_gateway: LoopbackServer, admin_key: str, tmp_path: Path) -> None:
    port = free_port()
    worker_file = tmp_path / "worker.pid"
    pid_file = tmp_path / "server.pid"
    env = os.environ | {"MANXUE_ENGINE_EXEC": " ".join(fake_exec()), "PYTHONUNBUFFERED": "1"}
    launcher = subprocess.Popen(
        [sys.executable, "-m", "manxue.engine_launch.cli", "launch", "vllm", "--model", "fake/llm",
         "--served-name", "fake-chat", "--port", str(port), "--gateway", admin_gateway.url,
         "--poll-interval", "0.1", "--grace", "2", "--log-file", str(tmp_path / "engine.log"),
         "--register-interval", "0.2", "--", "--spawn-worker", str(worker_file), "--pid-file", str(pid_file)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    name = f"vllm-127.0.0.1-{port}"
    try:
        def registered() -> bool:
            r = http.get(admin_gateway.url + "/admin/deployments", headers=AUTH, timeout=5)
            return any(d["name"] == name for d in r.json()["data"])

        _until(lambda: registered() or launcher.poll() is not None)
        assert launcher.poll() is None, launcher.communicate()[0]
        listed = http.get(admin_gateway.url + "/admin/deployments", headers=AUTH,
                              timeout=5).json()["data"]
        assert listed[0]["base_url"] == f"http://127.0.0.1:{port}/v1"
        assert listed[0]["tags"]["engine"] == "vllm"
        assert _chat(admin_gateway.url, "fake-chat", "ping") == f"fake-engine:{port} says: ping"
        server_pid, worker_pid = int(pid_file.read_text()), int(worker_file.read_text())
        # a gateway that forgets the deployment (it restarted, say) gets it back
        r = http.delete(f"{admin_gateway.url}/admin/deployments/{name}", headers=AUTH, timeout=5)
        assert r.status_code == 200
        _until(registered)
    finally:
        launcher.send_signal(signal.SIGTERM)
        out = launcher.communicate(timeout=20)[0]
    assert launcher.returncode == 0, out
    assert f"the gateway no longer lists '{name}'; registering it again" in out
    assert f"deployment '{name}' removed" in out
    assert not registered()
    assert not alive(server_pid) and not alive(worker_pid)


def _launch(gateway_url: str, port: int, tmp_path: Path, *extra: str,
            key: str = ADMIN_KEY) -> subprocess.Popen[str]:
    env = os.environ | {"MANXUE_ENGINE_EXEC": " ".join(fake_exec()), "MANXUE_ADMIN_KEY": key}
    return subprocess.Popen(
        [sys.executable, "-m", "manxue.engine_launch.cli", "launch", "sglang", "-m", "fake-moe",
         "--port", str(port), "--gateway", gateway_url, "--poll-interval", "0.1", "--grace", "2",
         "--backoff", "0.2", "--log-file", str(tmp_path / "engine.log"), *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_a_crashed_engine_leaves_the_gateway_until_it_is_back(
        admin_gateway: LoopbackServer, admin_key: str, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "engine.log"
    launcher = _launch(admin_gateway.url, port, tmp_path, "--", "--crash-after", "0.6",
                       "--crash-times", "1", "--state-file", str(tmp_path / "starts"))

    def listed() -> bool:
        r = http.get(admin_gateway.url + "/admin/deployments", headers=AUTH, timeout=5)
        return bool(r.json()["data"])

    try:
        _until(lambda: "fake engine start #2" in (log.read_text() if log.exists() else "")
               or launcher.poll() is not None)
        _until(listed)  # registered again: it was removed before the restart
        assert _chat(admin_gateway.url, "fake-moe") == f"fake-engine:{port} says: hi"
    finally:
        launcher.send_signal(signal.SIGINT)  # Ctrl-C
        out = launcher.communicate(timeout=20)[0]
    assert launcher.returncode == 0, out
    assert out.count("registered deployment") == 2
    assert "restart 1/5 in 0.2 s" in out
    assert out.count(f"deployment 'sglang-127.0.0.1-{port}' removed") == 2
    assert not listed()


def test_refused_registration_stops_the_engine(admin_gateway: LoopbackServer, admin_key: str,
                                               tmp_path: Path) -> None:
    pid_file = tmp_path / "server.pid"
    launcher = _launch(admin_gateway.url, free_port(), tmp_path, "--", "--pid-file", str(pid_file),
                       key="wrong-key")
    out = launcher.communicate(timeout=30)[0]
    assert launcher.returncode == 1, out
    assert "gateway answered 401" in out and "invalid admin key" in out
    assert not alive(int(pid_file.read_text()))


def test_registration_waits_for_a_gateway_that_is_not_up_yet(admin_key: str,
                                                             upstream: Upstream) -> None:
    port = free_port()
    said: list[str] = []
    payload = _dep(upstream, name="late")

    async def scenario() -> Registrar:
        client = GatewayClient(f"http://127.0.0.1:{port}", ADMIN_KEY, attempts=1)
        reg = Registrar(client, payload, interval=0.1, say=said.append)
        await reg.up()  # nobody listens yet: a warning, not an error
        assert not reg.registered
        srv = await asyncio.to_thread(start_gateway, 1, port)
        try:
            for _ in range(100):
                if reg.registered:
                    break
                await asyncio.sleep(0.05)
            assert [d["name"] for d in await client.deployments()] == ["late"]
            await reg.down()
            assert await client.deployments() == []
        finally:
            await client.close()
            await asyncio.to_thread(srv.stop)
        return reg

    reg = asyncio.run(scenario())
    assert reg.registrations == 1
    assert said[0].startswith("warning: cannot reach the gateway")
    assert said[-1] == f"deployment 'late' removed from http://127.0.0.1:{port}"
