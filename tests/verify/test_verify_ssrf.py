"""POST /v1/verify is no way into the gateway's network: targets that are (or resolve to)
loopback, private, link-local and other non-public addresses are refused before anything
connects, unless the operator allow-listed them; the check holds at every connection; redirects
are not followed and nothing raw comes back; jobs belong to their tenant and are capped.

Every server here is real and listens on 127.0.0.1; "public" names resolve through a fixed
table that stands in for DNS.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from manxue.errors import ConfigError
from manxue.server.app import build_app
from manxue.server.routes.verify import POLICY_KEY
from manxue.settings import settings_from_dict
from manxue.testing.loopback import LoopbackServer
from manxue.verify.netguard import Policy
from tests.helpers import Gateway, Upstream, deployment

LEAK = "LEAK-5ecret"
ADMIN = "admin-secret-for-verify-tests"
LOOPBACK_ALLOWED = {"allow_hosts": ["127.0.0.1"]}


class Canary:
    """A loopback service that must never be reached: records every request, answers with
    secret-looking text."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.any)
        self.server = LoopbackServer(app)

    async def any(self, request: web.Request) -> web.Response:
        self.hits.append(f"{request.method} {request.path_qs}")
        return web.Response(text=f"{LEAK} metrics and secrets")


class Hostile:
    """An audited endpoint that tries to smuggle data into the results: it redirects to the
    canary, answers errors with raw HTML or long JSON, answers 200 with non-chat bodies, or
    never answers (/slow)."""

    def __init__(self, canary: Canary) -> None:
        self.canary = canary
        app = web.Application()
        app.router.add_post("/{kind}/chat/completions", self.chat)
        self.server = LoopbackServer(app)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        kind = request.match_info["kind"]
        body = await request.json()
        if kind == "redirect":
            raise web.HTTPFound(f"{self.canary.server.url}/metrics?from=audit")
        if kind == "html500":
            return web.Response(status=500, text=f"<html><pre>{LEAK} stack trace</pre></html>")
        if kind == "jsonerr":
            return web.json_response({"error": {"message": "bad request: " + "y" * 2000,
                                                "type": "invalid_request_error", "code": "bad",
                                                "internal": LEAK}}, status=400)
        if kind == "slow":
            await asyncio.sleep(60)
        if body.get("stream"):
            return web.Response(text=f"{LEAK} line one\ndata: {LEAK}\n", content_type="text/plain")
        return web.json_response({"secret": LEAK, "usage": {"prompt_tokens": 3, "note": LEAK}})


class Rebinding(AbstractResolver):
    """DNS that answers an allowed address (127.0.0.2, allow-listed in the test) for the first
    lookup of a name, then 127.0.0.1: all on loopback, so nothing can leave the machine even
    if the guard failed."""

    def __init__(self) -> None:
        self.lookups = 0

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        self.lookups += 1
        addr = "127.0.0.2" if self.lookups == 1 else "127.0.0.1"
        return [ResolveResult(hostname=host, host=addr, port=port, family=socket.AF_INET,
                              proto=0, flags=0)]

    async def close(self) -> None:
        return None


@pytest.fixture(scope="module")
def canary() -> Iterator[Canary]:
    c = Canary()
    c.server.start()
    yield c
    c.server.stop()


@pytest.fixture(scope="module")
def hostile(canary: Canary) -> Iterator[Hostile]:
    h = Hostile(canary)
    h.server.start()
    yield h
    h.server.stop()


@pytest.fixture
def quiet_canary(canary: Canary) -> Iterator[Canary]:
    canary.hits.clear()
    yield canary
    assert canary.hits == [], "the audit reached a service it must not reach"


def _post(gw: Gateway | str, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    url = gw if isinstance(gw, str) else gw.url
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{url}/v1/verify", json=body, headers=headers, timeout=30)


def _wait(url: str, job_id: str, key: str | None = None, limit: float = 60) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        r = httpx.get(f"{url}/v1/verify/{job_id}", headers=headers, timeout=10)
        assert r.status_code == 200, r.text
        job: dict[str, Any] = r.json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish")


def _refused(r: httpx.Response, param: str) -> None:
    assert r.status_code == 403, (r.status_code, r.text)
    err = r.json()["error"]
    assert err["code"] == "verify_target_forbidden" and err["type"] == "permission_error"
    assert err["param"] == param and err["message"].startswith(param + ": ")
    assert "allow_hosts" in err["message"] or "user:password@" in err["message"] \
        or "not a valid IPv4 address" in err["message"]


def _forbidden_urls(port: int) -> list[str]:
    return [
        f"http://127.0.0.1:{port}/anything?x=", f"http://localhost:{port}/",
        f"http://LOCALHOST.:{port}/", f"http://127.0.0.1.:{port}/", f"http://2130706433:{port}/",
        f"http://0x7f.1:{port}/", f"http://127.1:{port}/", f"http://0177.0.0.1:{port}/",
        f"http://[::1]:{port}/", f"http://[::ffff:127.0.0.1]:{port}/", f"http://0.0.0.0:{port}/",
        f"http://[::]:{port}/", f"http://api.localhost:{port}/", f"https://127.0.0.1:{port}/v1",
        "http://10.0.0.1/v1", "http://172.16.5.4/", "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data/", "http://[64:ff9b::a9fe:a9fe]/",
        "http://100.64.0.1/", "http://224.0.0.1/", "http://[fe80::1]/", "http://[fd00::1]/",
        "http://[2002:7f00:1::]/", "http://240.0.0.1/", "http://255.255.255.255/",
        "http://user:pw@example.com/", "http://1.2.3.4.5/",
    ]


def test_non_public_targets_are_refused_before_any_connection(
        make_gateway: Callable[..., Gateway], upstream: Upstream, quiet_canary: Canary) -> None:
    gw = make_gateway([deployment(upstream, "primary")])
    for url in _forbidden_urls(quiet_canary.server.port):
        _refused(_post(gw, {"model": "deepseek-chat", "base_url": url}), "base_url")
        _refused(_post(gw, {"model": "deepseek-chat", "reference_url": url,
                            "reference_model": "m"}), "reference_url")
    r = _post(gw, {"model": "deepseek-chat", "base_url": gw.url})  # itself, but user-given
    _refused(r, "base_url")
    for url in ("ftp://example.com/", "file:///etc/passwd", "gopher://127.0.0.1:70/"):
        r = _post(gw, {"model": "deepseek-chat", "base_url": url})
        assert r.status_code == 422 and r.json()["error"]["param"] == "base_url"
    assert upstream.emu.received == []


def test_a_name_rebound_to_loopback_after_the_check_is_refused_at_connection(
        tmp_path: Path, upstream: Upstream, quiet_canary: Canary) -> None:
    """The name resolves to an allowed address when the request is checked, to 127.0.0.1 when
    the audit connects: the connection is refused, the job fails and says why."""
    app = build_app(settings_from_dict({"deployments": [deployment(upstream, "primary")],
                                        "data_dir": str(tmp_path)}))
    dns = Rebinding()
    app[POLICY_KEY] = Policy.from_hosts(["127.0.0.2"], resolver=lambda: dns)
    with LoopbackServer(app) as srv:
        r = _post(srv.url, {"model": "m", "checks": ["protocol"],
                            "base_url": f"http://rebind.test:{quiet_canary.server.port}/v1"})
        assert r.status_code == 202, r.text
        job = _wait(srv.url, r.json()["id"])
    assert job["status"] == "failed" and "loopback" in job["error"]
    assert "allow_hosts" in job["error"] and dns.lookups >= 2


def test_allow_hosts_opens_the_operators_internal_endpoints(
        make_gateway: Callable[..., Gateway], upstream: Upstream) -> None:
    gw = make_gateway([deployment(upstream, "primary")], verify=LOOPBACK_ALLOWED)
    r = _post(gw, {"model": "deepseek-chat", "claim": "deepseek-v3", "base_url": upstream.url,
                   "checks": ["protocol"], "seed": 1})
    assert r.status_code == 202, r.text
    job = _wait(gw.url, r.json()["id"])
    assert job["status"] == "done", job["error"]
    assert job["result"]["settings"]["base_url"] == upstream.url
    assert len(upstream.emu.received) == 4  # what the protocol check sent, all of it arrived
    _refused(_post(gw, {"model": "m", "base_url": "http://10.0.0.1/"}), "base_url")
    by_range = make_gateway([deployment(upstream, "primary")],
                            verify={"allow_hosts": ["127.0.0.0/8", "localhost"]})
    for url in (f"http://127.0.0.9:{upstream.server.port}", f"http://localhost:{upstream.server.port}"):
        r = _post(by_range, {"model": "m", "base_url": url, "checks": ["protocol"]})
        assert r.status_code == 202, r.text
        _wait(by_range.url, r.json()["id"])


def test_the_gateway_still_audits_itself(make_gateway: Callable[..., Gateway],
                                         upstream: Upstream) -> None:
    """No base_url (and reference_model without reference_url) means this gateway: the route
    built that URL, so it is allowed although it is loopback."""
    gw = make_gateway([deployment(upstream, "primary")])
    r = _post(gw, {"model": "deepseek-chat", "reference_model": "deepseek-chat",
                   "checks": ["protocol"], "seed": 3})
    assert r.status_code == 202, r.text
    job = _wait(gw.url, r.json()["id"])
    assert job["status"] == "done", job["error"]
    assert job["result"]["settings"]["base_url"].startswith("http://127.0.0.1:")
    assert job["result"]["requests"] == 4


@pytest.mark.parametrize("kind", ["redirect", "html500", "jsonerr", "notchat"])
def test_redirects_and_raw_bodies_never_reach_results(
        kind: str, make_gateway: Callable[..., Gateway], upstream: Upstream, hostile: Hostile,
        quiet_canary: Canary) -> None:
    gw = make_gateway([deployment(upstream, "primary")], verify=LOOPBACK_ALLOWED)
    r = _post(gw, {"model": "m", "claim": "deepseek-v3", "checks": ["protocol"],
                   "base_url": f"{hostile.server.url}/{kind}"})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    job = _wait(gw.url, job_id)
    assert job["status"] == "done", job["error"]
    report = httpx.get(f"{gw.url}/v1/verify/{job_id}/report.html", timeout=10).text
    assert LEAK not in orjson.dumps(job).decode() and LEAK not in report
    proto = job["result"]["checks"][0]
    answers = [e["received"] for e in proto["evidence"]["exchanges"]]
    if kind in ("redirect", "html500", "notchat"):  # an endpoint that cannot be used at all:
        assert job["result"]["verdict"] == "error"  # two such answers, then nothing is sent
        sent = [a for a in answers if a["status"] != 0]
        assert all(a["error"].startswith("not sent: the audit stopped")
                   for a in answers if a["status"] == 0)
        assert job["result"]["requests"] == 2 and len(job["result"]["error"]["replies"]) == 2
    else:
        sent = answers
    if kind == "redirect":
        assert {a["status"] for a in sent} == {302}
        assert all("not followed" in a["error"] for a in sent)
        assert "redirected" in job["result"]["error"]["cause"]
    if kind == "jsonerr":
        err = answers[0]["api_error"]
        assert err["type"] == "invalid_request_error" and err["code"] == "bad"
        assert err["message"].startswith("bad request: ") and len(err["message"]) <= 301
    if kind == "notchat":
        assert sent[0]["usage"] == {"prompt_tokens": 3}


def _billing_gateway(make_gateway: Callable[..., Gateway], upstream: Upstream,
                     monkeypatch: pytest.MonkeyPatch, **verify: Any) -> Gateway:
    monkeypatch.setenv("MANXUE_ADMIN_KEY", ADMIN)
    return make_gateway([deployment(upstream, "primary")], verify=verify,
                        billing={"flush_interval": 0.1, "key_refresh_interval": 0.2})


def _key(gw: Gateway, tenant: str) -> str:
    r = httpx.post(f"{gw.url}/admin/keys", json={"tenant": tenant}, timeout=10,
                   headers={"Authorization": f"Bearer {ADMIN}"})
    assert r.status_code == 201, r.text
    key: str = r.json()["key"]
    return key


def test_a_job_is_visible_to_its_tenant_only(make_gateway: Callable[..., Gateway],
                                             upstream: Upstream,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    gw = _billing_gateway(make_gateway, upstream, monkeypatch)
    acme, acme2, beta = _key(gw, "acme"), _key(gw, "acme"), _key(gw, "beta")
    r = _post(gw, {"model": "deepseek-chat", "checks": ["protocol"]}, key=acme)
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    unknown = httpx.get(f"{gw.url}/v1/verify/vrf-0000000000000000", timeout=10,
                        headers={"Authorization": f"Bearer {beta}"})
    for path in (f"/v1/verify/{job_id}", f"/v1/verify/{job_id}/report.html"):
        theirs = httpx.get(gw.url + path, headers={"Authorization": f"Bearer {beta}"}, timeout=10)
        assert theirs.status_code == 404, theirs.text
        assert theirs.json()["error"]["code"] == unknown.json()["error"]["code"] \
            == "verify_job_not_found"
        assert theirs.json()["error"]["message"].replace(job_id, "ID") \
            == unknown.json()["error"]["message"].replace("vrf-0000000000000000", "ID")
    assert _wait(gw.url, job_id, key=acme2)["id"] == job_id  # same tenant, other key
    assert _wait(gw.url, job_id, key=acme)["status"] in ("done", "failed")


def test_running_jobs_are_capped_per_tenant_and_in_all(
        make_gateway: Callable[..., Gateway], upstream: Upstream, hostile: Hostile,
        monkeypatch: pytest.MonkeyPatch) -> None:
    gw = _billing_gateway(make_gateway, upstream, monkeypatch, max_running=2,
                          max_running_per_tenant=1, allow_hosts=["127.0.0.1"])
    acme, acme2, beta, gamma = (_key(gw, t) for t in ("acme", "acme", "beta", "gamma"))
    slow = {"model": "m", "checks": ["protocol"], "base_url": f"{hostile.server.url}/slow"}
    assert _post(gw, slow, key=acme).status_code == 202
    again = _post(gw, slow, key=acme2)
    assert again.status_code == 429 and again.json()["error"]["code"] == "verify_jobs_per_tenant"
    assert int(again.headers["Retry-After"]) >= 1
    assert _post(gw, slow, key=beta).status_code == 202
    full = _post(gw, slow, key=gamma)
    assert full.status_code == 429 and full.json()["error"]["code"] == "verify_jobs_busy"
    assert "Retry-After" in full.headers


def test_a_bad_allow_hosts_entry_stops_the_gateway_at_start(tmp_path: Path) -> None:
    settings = settings_from_dict({"verify": {"allow_hosts": ["10.0.0.0/33"]},
                                   "billing": {"enabled": False}, "data_dir": str(tmp_path)})
    with pytest.raises(ConfigError, match="allow_hosts"):
        build_app(settings)


@pytest.mark.parametrize("budget", [None, 0, 201, 10**9, "40", True])
def test_an_audit_over_the_api_is_a_bounded_number_of_requests(
        make_gateway: Callable[..., Gateway], upstream: Upstream, budget: Any) -> None:
    """No open tap toward a third party: budget_requests is an integer from 1 to 200."""
    gw = make_gateway([deployment(upstream, "primary")])
    r = _post(gw, {"model": "deepseek-chat", "budget_requests": budget})
    assert r.status_code == 422 and r.json()["error"]["param"] == "budget_requests"
    assert upstream.emu.received == []
