"""What the gateway exposes and to whom, on real loopback servers: open mode and forwarding
headers, /metrics and /ready off loopback, admin query values, malformed HTTP, slow headers,
the database file's mode, expired keys in `manxue keys list`."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from aiohttp import web

from manxue.server.app import build_app
from manxue.server.run import HEADER_TIMEOUT, new_loop, serving
from manxue.settings import settings_from_dict
from manxue.store.db import open_engine
from tests.helpers import Gateway, Upstream, deployment

ADMIN = "admin-key-for-security-tests"
XFF = "X-Forwarded-For"
MSG = [{"role": "user", "content": "hi"}]


def _chat(gw: Gateway, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(gw.url + "/v1/chat/completions", headers=headers or {}, timeout=30,
                      json={"model": "deepseek-chat", "messages": MSG})


# -- open mode (billing on, no key yet) believes forwarding headers only from trusted proxies --


def test_open_mode_serves_loopback(gateway):
    assert _chat(gateway).status_code == 200


def test_open_mode_forwarded_from_untrusted_peer_is_remote(gateway):
    for headers in ({XFF: "203.0.113.9"}, {XFF: "127.0.0.1"}, {"X-Real-IP": "127.0.0.1"},
                    {"Forwarded": "for=127.0.0.1"}):
        r = _chat(gateway, headers)
        assert r.status_code == 401, headers
        assert "only answers clients on this machine" in r.json()["error"]["message"]
        assert httpx.get(gateway.url + "/v1/models", headers=headers).status_code == 401


def test_open_mode_behind_trusted_proxy_uses_the_forwarded_client(make_gateway, upstream):
    gw = make_gateway([deployment(upstream, "primary")],
                      server={"trusted_proxies": ["127.0.0.1"]})
    r = _chat(gw, {XFF: "203.0.113.9"})  # the client is 203.0.113.9: not this machine
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    assert _chat(gw, {XFF: "198.51.100.7, 127.0.0.1"}).status_code == 401  # spoofed left hop
    assert _chat(gw, {XFF: "127.0.0.1"}).status_code == 200  # a client on this machine
    assert _chat(gw).status_code == 200  # no proxy in between


# -- /metrics and /ready on a gateway bound to a network address --


def _exposed(make_gateway: Callable[..., Gateway], upstream: Upstream, host: str = "0.0.0.0",
             deployments: list[dict[str, Any]] | None = None, **server: Any) -> Gateway:
    # settings.server.host decides; the test server itself listens on 127.0.0.1 only
    deps = [deployment(upstream, "primary")] if deployments is None else deployments
    return make_gateway(deps, server={"host": host, **server}, billing={"enabled": False})


def test_metrics_need_the_admin_key_off_loopback(make_gateway, upstream, monkeypatch):
    monkeypatch.setenv("MANXUE_ADMIN_KEY", ADMIN)
    gw = _exposed(make_gateway, upstream)
    r = httpx.get(gw.url + "/metrics")
    assert r.status_code == 401 and r.json()["error"]["code"] == "missing_admin_key"
    wrong = httpx.get(gw.url + "/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_admin_key"
    ok = httpx.get(gw.url + "/metrics", headers={"Authorization": f"Bearer {ADMIN}"})
    assert ok.status_code == 200 and "manxue_requests_total" in ok.text


def test_metrics_off_loopback_without_an_admin_key_configured(make_gateway, upstream, monkeypatch):
    monkeypatch.delenv("MANXUE_ADMIN_KEY", raising=False)
    gw = _exposed(make_gateway, upstream, host="192.0.2.10")
    r = httpx.get(gw.url + "/metrics")
    assert r.status_code == 403
    err = r.json()["error"]
    assert err["code"] == "metrics_need_admin_key" and "public_metrics" in err["message"]


def test_ready_off_loopback_tells_only_the_status(make_gateway, upstream, monkeypatch):
    monkeypatch.setenv("MANXUE_ADMIN_KEY", ADMIN)
    gw = _exposed(make_gateway, upstream, host="::")
    r = httpx.get(gw.url + "/ready")
    assert r.status_code == 200 and r.json() == {"status": "ready"}
    wrong = httpx.get(gw.url + "/ready", headers={"Authorization": "Bearer nope"})
    assert wrong.json() == {"status": "ready"}
    full = httpx.get(gw.url + "/ready", headers={"Authorization": f"Bearer {ADMIN}"}).json()
    assert full["deployments"]["primary"]["breaker"] == "closed"
    assert httpx.get(gw.url + "/health").json() == {"status": "ok"}  # always public


def test_ready_off_loopback_unavailable_keeps_its_status_code(make_gateway, upstream, monkeypatch):
    monkeypatch.setenv("MANXUE_ADMIN_KEY", ADMIN)
    gw = _exposed(make_gateway, upstream, deployments=[])
    r = httpx.get(gw.url + "/ready")
    assert r.status_code == 503 and r.json() == {"status": "unavailable"}
    full = httpx.get(gw.url + "/ready", headers={"Authorization": f"Bearer {ADMIN}"})
    assert full.status_code == 503 and "message" in full.json()


def test_public_metrics_opens_both(make_gateway, upstream, monkeypatch):
    monkeypatch.delenv("MANXUE_ADMIN_KEY", raising=False)
    gw = _exposed(make_gateway, upstream, public_metrics=True)
    assert httpx.get(gw.url + "/metrics").status_code == 200
    assert "deployments" in httpx.get(gw.url + "/ready").json()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_loopback_bind_changes_nothing(make_gateway, upstream, monkeypatch, host):
    monkeypatch.delenv("MANXUE_ADMIN_KEY", raising=False)
    gw = _exposed(make_gateway, upstream, host=host)
    assert httpx.get(gw.url + "/metrics").status_code == 200
    assert "deployments" in httpx.get(gw.url + "/ready").json()


# -- admin query values: 422 in the OpenAI error shape, never 500 --

FUZZ = ["", "0", "-1", "1", "1e20", "99999999999999999999", "9" * 5000, "²", "١٢", "８",
        " 5", "5 ", "+5", "0x10", "nan", "inf", "null", "true", "[]", "abc", "\x00", "\u2028",
        "a'\";--", "../../etc/passwd", "x" * 2000, "9999-12", "0000-01", "2026-13", "2026-00",
        "2026-1", "99999-01-01", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00",
        "9999-12-31T23:30:00Z", "0001-01-01", "1000-01-01", "2026-02-30", "2026-11-01",
        "2026-11-01T08:00:00+14:00", "hour", "day", "tenant", "key", "model", "deployment",
        "csv", "json", "acme"]
ADMIN_GETS = {
    "/admin/keys": ["tenant"],
    "/admin/tenants": ["x"],
    "/admin/deployments": ["x"],
    "/admin/usage": ["tenant", "key", "since", "until", "by", "limit"],
    "/admin/invoice": ["month", "format", "tenant"],
    "/admin/dashboard/series": ["bucket", "by", "since", "until", "tenant", "key", "top"],
    "/admin/dashboard/errors": ["since", "until", "limit"],
}
NEEDED = {"/admin/invoice": {"tenant": "acme", "month": "2026-11"}}


def _query(params: dict[str, str]) -> str:
    return "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())


@pytest.fixture
def admin_gateway(make_gateway, upstream, monkeypatch) -> Iterator[tuple[Gateway, httpx.Client]]:
    monkeypatch.setenv("MANXUE_ADMIN_KEY", ADMIN)
    gw = make_gateway([deployment(upstream, "primary")])
    with httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {ADMIN}"},
                      timeout=30) as admin:
        assert admin.post("/admin/keys", json={"tenant": "acme"}).status_code == 201
        yield gw, admin


def test_admin_get_routes_never_answer_500(admin_gateway):
    _, admin = admin_gateway
    seen: dict[int, int] = {}
    for path, names in ADMIN_GETS.items():
        for name in names:
            for value in FUZZ:
                params = {**NEEDED.get(path, {}), name: value}
                r = admin.get(f"{path}?{_query(params)}")
                seen[r.status_code] = seen.get(r.status_code, 0) + 1
                where = f"{path} {name}={value[:40]!r}"
                assert r.status_code < 500, f"{where}: {r.status_code} {r.text[:300]}"
                if r.status_code >= 400:
                    err = r.json()["error"]
                    assert err["message"] and err["type"] == "invalid_request_error", where
    assert seen.get(200) and seen.get(422)  # both kinds of answer were exercised


def test_admin_raw_query_bytes_are_not_500(admin_gateway):
    gw, _ = admin_gateway
    for raw in ("limit=%ED%A0%80", "since=%FF%FE", "tenant=%C0%AF", "month=%00", "top=%", "by=%zz",
                "limit=1&limit=2", "since"):
        for path in ("/admin/usage", "/admin/dashboard/series", "/admin/dashboard/errors"):
            r = httpx.get(f"{gw.url}{path}?{raw}", headers={"Authorization": f"Bearer {ADMIN}"})
            assert r.status_code < 500, f"{path}?{raw}: {r.status_code} {r.text[:300]}"


@pytest.mark.parametrize(("path", "params", "param"), [
    ("/admin/usage", {"limit": "1e20"}, "limit"),
    ("/admin/usage", {"limit": "-1"}, "limit"),
    ("/admin/usage", {"limit": "0"}, "limit"),
    ("/admin/usage", {"limit": "99999999999999999999"}, "limit"),
    ("/admin/usage", {"limit": "²"}, "limit"),
    ("/admin/usage", {"since": "99999-01-01"}, "since"),
    ("/admin/usage", {"until": "0001-01-01T00:00:00+01:00"}, "until"),
    ("/admin/invoice", {"tenant": "acme", "month": "9999-12"}, "month"),
    ("/admin/invoice", {"tenant": "acme", "month": "0000-01"}, "month"),
    ("/admin/invoice", {"tenant": "acme", "month": "2026-13"}, "month"),
    ("/admin/invoice", {"tenant": "acme", "month": "2026-1"}, "month"),
    ("/admin/dashboard/series", {"top": "99999999999999999999"}, "top"),
    ("/admin/dashboard/series", {"top": "51"}, "top"),
    ("/admin/dashboard/series", {"until": "9999-12-31T23:30:00Z"}, "until"),
    ("/admin/dashboard/series", {"until": "0001-01-02"}, "until"),
    ("/admin/dashboard/errors", {"limit": "1e20"}, "limit"),
    ("/admin/dashboard/errors", {"limit": "9" * 5000}, "limit"),
])
def test_admin_values_out_of_range_are_422(admin_gateway, path, params, param):
    _, admin = admin_gateway
    r = admin.get(f"{path}?{_query(params)}")
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["param"] == param and err["type"] == "invalid_request_error"


def test_admin_values_in_range_still_work(admin_gateway):
    _, admin = admin_gateway
    assert admin.get("/admin/usage?limit=1000000").status_code == 200
    assert admin.get("/admin/invoice?tenant=acme&month=9999-11&format=json").status_code == 200
    assert admin.get("/admin/invoice?tenant=acme&month=0001-01").status_code == 200
    assert admin.get("/admin/dashboard/series?top=50&bucket=day&since=2026-01-01&until=2026-02-01"
                     ).status_code == 200
    assert admin.get("/admin/dashboard/errors?limit=100").status_code == 200


# -- malformed HTTP and slow headers, on the server `manxue serve` runs --


@contextmanager
def _served(app: web.Application, **kw: Any) -> Iterator[int]:
    """`serving(app, "127.0.0.1", 0)` on its own loop and thread; yields the port."""
    loop = new_loop()
    started: list[int] = []
    ready = threading.Event()
    stop: list[asyncio.Event] = []

    async def main() -> None:
        stop.append(asyncio.Event())
        async with serving(app, "127.0.0.1", 0, **kw) as port:
            started.append(port)
            ready.set()
            await stop[0].wait()

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    thread.start()
    assert ready.wait(30), "server did not start"
    try:
        yield started[0]
    finally:
        loop.call_soon_threadsafe(stop[0].set)
        thread.join(15)
        loop.close()


def _app(tmp_path: Path) -> web.Application:
    return build_app(settings_from_dict({"billing": {"enabled": False}, "data_dir": str(tmp_path)}))


def _raw(port: int, data: bytes, timeout: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def _json_error(raw: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"content-type: application/json" in head.lower(), head
    return status, json.loads(body)


@pytest.mark.parametrize("request_bytes", [
    b"GARBAGE\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 20000 + b"\r\n\r\n",
    b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n",
])
def test_malformed_http_answers_openai_error_json(tmp_path, request_bytes):
    with _served(_app(tmp_path)) as port:
        status, body = _json_error(_raw(port, request_bytes))
        assert status == 400
        err = body["error"]
        assert err["type"] == "invalid_request_error" and err["code"] == "bad_http_request"
        assert err["message"].startswith("malformed HTTP request")
        assert b"aaaaaaaaaa" not in err["message"].encode()  # the client's bytes are not echoed
        # the server goes on answering
        assert httpx.get(f"http://127.0.0.1:{port}/health").json() == {"status": "ok"}


def test_slow_headers_are_cut_off(tmp_path):
    assert HEADER_TIMEOUT <= 120  # not aiohttp's hour
    with _served(_app(tmp_path), keepalive_timeout=0.5) as port, \
            socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        t0 = time.monotonic()
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        closed = False
        for i in range(40):  # a header byte every 0.1 s: never a whole request head
            try:
                s.sendall(b"X-Slow: %d\r\n" % i)
            except OSError:
                closed = True
                break
            s.settimeout(0.1)
            try:
                if s.recv(1024) == b"":
                    closed = True
                    break
            except TimeoutError:
                pass
        assert closed and time.monotonic() - t0 < 3


def test_idle_connection_still_served_before_the_timeout(tmp_path):
    with _served(_app(tmp_path), keepalive_timeout=2) as port, \
            httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        assert client.get("/health").status_code == 200
        time.sleep(0.3)
        assert client.get("/health").status_code == 200


# -- the SQLite database is readable by its owner only --


def test_sqlite_database_and_side_files_are_0600(tmp_path):
    old = os.umask(0o022)
    try:
        path = tmp_path / "new-dir" / "manxue.db"
        engine = open_engine(f"sqlite:///{path}")
        with engine.connect() as c:  # the migrations wrote to it: -wal and -shm exist now
            c.exec_driver_sql("SELECT 1")
            for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                assert p.exists(), p
                assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
        engine.dispose()
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    finally:
        os.umask(old)


def test_existing_database_keeps_its_mode(tmp_path):
    path = tmp_path / "shared.db"
    open_engine(f"sqlite:///{path}").dispose()
    path.chmod(0o640)  # the operator chose this
    open_engine(f"sqlite:///{path}").dispose()
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


# -- expired keys are shown as expired --


def _manxue(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "manxue", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "COLUMNS": "250"})


def test_keys_list_shows_expired_keys(tmp_path, make_gateway, upstream, monkeypatch):
    cfg = tmp_path / "manxue.toml"
    cfg.write_text(f'data_dir = "{tmp_path / "data"}"\n')
    past, future = "2020-01-01T00:00:00Z", "2999-01-01T00:00:00Z"
    ids = {}
    for name, expires in (("old", past), ("new", future), ("off", None)):
        args = ["keys", "create", "--tenant", "acme", "--name", name, "--json", "--config", str(cfg)]
        r = _manxue(*args, *(["--expires", expires] if expires else []))
        assert r.returncode == 0, r.stderr
        ids[name] = json.loads(r.stdout)["id"]
    assert _manxue("keys", "disable", ids["off"], "--config", str(cfg)).returncode == 0

    listed = {k["id"]: k for k in json.loads(_manxue("keys", "list", "--json", "--config",
                                                     str(cfg)).stdout)}
    assert {n: listed[i]["status"] for n, i in ids.items()} == {
        "old": "expired", "new": "active", "off": "disabled"}
    table = _manxue("keys", "list", "--config", str(cfg)).stdout
    rows = {line.split("│")[1].strip(): line for line in table.splitlines() if "key_" in line}
    assert "expired" in rows[ids["old"]] and "active" not in rows[ids["old"]]
    assert "active" in rows[ids["new"]] and "disabled" in rows[ids["off"]]

    # the admin API reports the same status
    monkeypatch.setenv("MANXUE_ADMIN_KEY", ADMIN)
    gw = make_gateway([deployment(upstream, "primary")], data_dir=str(tmp_path / "data"))
    keys = httpx.get(gw.url + "/admin/keys", headers={"Authorization": f"Bearer {ADMIN}"}).json()
    assert {k["name"]: k["status"] for k in keys["data"]} == {
        "old": "expired", "new": "active", "off": "disabled"}


def test_loopback_bind_behind_a_proxy_keeps_details_for_the_admin(make_gateway, upstream,
                                                                  monkeypatch):
    """A local reverse proxy makes every request arrive from 127.0.0.1: a forwarded request is
    remote, so /metrics and the details of /ready stay the admin's."""
    monkeypatch.setenv("MANXUE_ADMIN_KEY", "adm")
    gw = _exposed(make_gateway, upstream, host="127.0.0.1", trusted_proxies=["127.0.0.1"])
    fwd = {"X-Forwarded-For": "203.0.113.7"}
    assert httpx.get(gw.url + "/metrics", headers=fwd).status_code == 401
    assert httpx.get(gw.url + "/ready", headers=fwd).json() == {"status": "ready"}
    admin = {**fwd, "Authorization": "Bearer adm"}
    assert httpx.get(gw.url + "/metrics", headers=admin).status_code == 200
    assert "deployments" in httpx.get(gw.url + "/ready", headers=admin).json()
    untrusted = make_gateway([deployment(upstream, "primary")])  # no trusted proxies at all
    assert httpx.get(untrusted.url + "/metrics", headers=fwd).status_code == 401
    assert httpx.get(untrusted.url + "/metrics").status_code == 200
