"""Fixtures for the engine launcher: the stand-in engine, free ports, a gateway with admin routes."""

from __future__ import annotations

import json as _json
import os
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from manxue.server.app import build_app
from manxue.server.routes import admin_deployments
from manxue.settings import settings_from_dict
from manxue.testing.loopback import LoopbackServer

FAKE_ENGINE = Path(__file__).with_name("fake_engine.py")
ADMIN_KEY = "test-admin-key"


def fake_exec() -> tuple[str, ...]:
    """Replaces `python -m vllm.entrypoints.openai.api_server` in launch specs."""
    return (sys.executable, str(FAKE_ENGINE))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def alive(pid: int) -> bool:
    """Running, and not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


def start_gateway(workers: int = 1, port: int = 0, **top: Any) -> LoopbackServer:
    settings = settings_from_dict({"server": {"workers": workers}, **top})
    app = build_app(settings)
    admin_deployments.add_routes(app)
    return LoopbackServer(app, port=port).start()


@pytest.fixture
def admin_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MANXUE_ADMIN_KEY", ADMIN_KEY)
    return ADMIN_KEY


@pytest.fixture
def admin_gateway() -> Iterator[LoopbackServer]:
    """A running gateway with no deployment and the admin routes mounted."""
    srv = start_gateway()
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def _no_inherited_admin_key(monkeypatch: pytest.MonkeyPatch) -> None:
    if "MANXUE_ADMIN_KEY" in os.environ:
        monkeypatch.delenv("MANXUE_ADMIN_KEY")


class Resp:
    def __init__(self, status: int, body: bytes) -> None:
        self.status_code = status
        self.text = body.decode(errors="replace")

    def json(self) -> Any:
        return _json.loads(self.text)


class http:
    """Blocking HTTP calls on the standard library, used like a module: http.get(url)."""

    @staticmethod
    def request(method: str, url: str, headers: dict[str, str] | None = None,
                json: Any = None, data: bytes | None = None, timeout: float = 5) -> Resp:
        hdrs = dict(headers or {})
        if json is not None:
            data = _json.dumps(json).encode()
            hdrs.setdefault("Content-Type", "application/json")
        req = urllib.request.Request(url, data=data, headers=hdrs, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return Resp(r.status, r.read())
        except urllib.error.HTTPError as e:
            return Resp(e.code, e.read())

    @staticmethod
    def get(url: str, **kw: Any) -> Resp:
        return http.request("GET", url, **kw)

    @staticmethod
    def post(url: str, **kw: Any) -> Resp:
        return http.request("POST", url, **kw)

    @staticmethod
    def delete(url: str, **kw: Any) -> Resp:
        return http.request("DELETE", url, **kw)
