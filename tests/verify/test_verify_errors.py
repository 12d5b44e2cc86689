"""An endpoint or reference that cannot be used ends the audit early with the verdict `error`,
naming the cause and whose it is: a refused or missing key (the DeepSeek emulator's 401), no
such model (the bench gateway's 404), nothing listening (a closed port), no answer (a server
that never answers). All servers are on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from aiohttp import web
from typer.testing import CliRunner

from manxue.testing.deepseek_emulator import DeepSeekEmulator
from manxue.testing.loopback import LoopbackServer
from manxue.verify import AuditConfig, run_audit
from manxue.verify.cli import EXIT, verify
from manxue.verify.report_html import render
from manxue.verify.verdict import Failure, Side, describe_failure
from tests.verify.conftest import Bench, run

KEY = "sk-the-right-key"
app = typer.Typer()
app.command("verify")(verify)
app.command("noop")(lambda: None)


@pytest.fixture(scope="module")
def locked() -> Iterator[tuple[DeepSeekEmulator, LoopbackServer]]:
    """A DeepSeek emulator that answers 401 unless the key is KEY."""
    emu = DeepSeekEmulator(api_key=KEY)
    with LoopbackServer(emu.app()) as srv:
        yield emu, srv


@pytest.fixture(scope="module")
def open_emulator() -> Iterator[LoopbackServer]:
    with LoopbackServer(DeepSeekEmulator().app()) as srv:
        yield srv


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _audit(base_url: str, **kw: Any) -> dict[str, Any]:
    kw.setdefault("model", "deepseek-chat")
    kw.setdefault("claim", "deepseek-v3")
    kw.setdefault("seed", 1)
    return run(run_audit(AuditConfig(base_url=base_url, **kw)))


def _stopped_early(r: dict[str, Any], most: int = 2) -> None:
    assert r["verdict"] == "error"
    assert r["requests"] <= most, r["requests"]
    assert r["posterior"] == {}
    assert all(c["status"] == "skip" for c in r["checks"])
    assert any("not run: the audit stopped" in c["summary"] for c in r["checks"])


def test_a_wrong_key_is_an_error_of_the_audited_endpoint(locked: tuple[DeepSeekEmulator,
                                                                       LoopbackServer]) -> None:
    emu, srv = locked
    emu.received.clear()
    r = _audit(srv.url, api_key="sk-wrong")
    _stopped_early(r)
    assert len(emu.received) == 2  # one at a time until the side works: two 401s, then nothing
    e = r["error"]
    assert e["side"] == "audited endpoint" and e["status"] == 401
    assert e["cause"] == ("the endpoint refused the API key (HTTP 401: Authentication Fails "
                          "(no such user))")
    assert "--api-key" in e["what_to_do"]
    assert e["replies"] and e["replies"][0]["status"] == 401
    assert "sk-wrong" not in str(r)
    assert r["reason"].startswith("could not audit: the audited endpoint cannot be used")


def test_a_missing_key_says_none_was_given(locked: tuple[DeepSeekEmulator, LoopbackServer]) -> None:
    r = _audit(locked[1].url)
    _stopped_early(r)
    assert r["error"]["status"] == 401
    assert r["error"]["cause"].startswith("the endpoint requires an API key and none was given")


def test_a_reference_that_needs_a_key_is_the_references_error(
        locked: tuple[DeepSeekEmulator, LoopbackServer], open_emulator: LoopbackServer) -> None:
    r = _audit(open_emulator.url, reference_url=locked[1].url, checks=("distribution",),
               budget_requests=6)
    assert r["verdict"] == "error", r["reason"]
    e = r["error"]
    assert e["side"] == "reference" and e["status"] == 401
    assert e["cause"].startswith("the reference requires an API key and none was given (HTTP 401")
    assert "--reference-api-key" in e["what_to_do"]
    assert r["reference_requests"] == 2  # stopped after the first two failures, not all 6
    dist = r["checks"][0]
    assert dist["status"] == "skip" and dist["summary"].startswith("stopped: the reference")


def test_an_unusable_reference_is_found_before_the_probes_are_spent(
        bench: Bench, locked: tuple[DeepSeekEmulator, LoopbackServer]) -> None:
    """The distribution test (the reference's first use) runs right after the tokenizer."""
    r = bench.audit("honest", reference_url=locked[1].url, reference_model="deepseek-chat",
                    reference_api_key="sk-wrong", budget_requests=40)
    assert r["verdict"] == "error" and r["error"]["side"] == "reference"
    assert r["error"]["cause"].startswith("the reference refused the API key (HTTP 401")
    assert [c["name"] for c in r["checks"]] == ["tokenizer", "protocol", "capability",
                                                "distribution"]
    assert r["checks"][0]["status"] == "pass"
    assert r["checks"][1]["requests"] == r["checks"][2]["requests"] == 0
    assert r["requests"] <= 3 + 4 and r["reference_requests"] == 2


def test_nothing_listening_is_connection_refused() -> None:
    port = _closed_port()
    t0 = time.monotonic()
    r = _audit(f"http://127.0.0.1:{port}")
    _stopped_early(r)
    assert time.monotonic() - t0 < 15
    e = r["error"]
    assert e["status"] is None and e["kind"] == "connection refused"
    assert f"127.0.0.1:{port}" in e["cause"] and "connection refused" in e["cause"]
    assert "--base-url" in e["what_to_do"]


def test_no_answer_within_the_timeout() -> None:
    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.json_response({})

    silent = web.Application()
    silent.router.add_post("/v1/chat/completions", hang)
    with LoopbackServer(silent) as srv:
        r = _audit(srv.url, timeout=0.5)
    _stopped_early(r)
    assert r["error"]["kind"] == "timeout" and "did not answer within 0.5 s" in r["error"]["cause"]


def test_an_unknown_model_is_a_404_error(bench: Bench) -> None:
    r = bench.audit("no-such-model", reference=False, claim="smollm2-135m-instruct")
    _stopped_early(r)
    e = r["error"]
    assert e["status"] == 404 and "no model 'no-such-model'" in e["cause"]
    assert "--model" in e["what_to_do"] and "/v1/models" in e["what_to_do"]


def test_failures_of_one_request_do_not_make_an_error(open_emulator: LoopbackServer) -> None:
    """The protocol check provokes a 400 (empty messages) and asks for an unknown model: those
    say nothing about whether the endpoint can be used."""
    r = _audit(open_emulator.url, checks=("tokenizer", "protocol"))
    assert r["verdict"] != "error" and r["error"] is None
    assert r["requests"] == 7


def test_cause_texts_for_failures_the_loopback_cannot_show() -> None:
    side = Side("suspect", "https://api.example.invalid", "m", has_key=True)
    dns = describe_failure(Failure(None, "name not resolved", "ClientConnectorDNSError: …"), side)
    assert "does not resolve" in dns["cause"] and "--base-url" in dns["what_to_do"]
    ref = Side("reference", "https://ref.example", "r", has_key=True)
    forbidden = describe_failure(Failure(403, "http 403", "not allowed"), ref)
    assert forbidden["side"] == "reference" and "(HTTP 403: not allowed)" in forbidden["cause"]
    assert "--reference-api-key" in forbidden["what_to_do"]
    busy = describe_failure(Failure(503, "http 503", None), side)
    assert busy["status"] == 503 and "server error" in busy["cause"]


def test_cli_exit_code_and_output(locked: tuple[DeepSeekEmulator, LoopbackServer],
                                  tmp_path: Path) -> None:
    report = tmp_path / "audit.html"
    res = CliRunner().invoke(app, ["verify", "--base-url", locked[1].url, "--model",
                                   "deepseek-chat", "--claim", "deepseek-v3", "--api-key", "sk-x",
                                   "--seed", "1", "--report", str(report)])
    assert res.exit_code == EXIT["error"] == 4, res.output
    assert len(set(EXIT.values())) == 4 and 2 not in EXIT.values()  # 2 is bad usage
    text = " ".join(res.stdout.split())  # the console wraps at its width
    assert text.startswith("error the audited endpoint cannot be used: the endpoint refused the "
                           "API key (HTTP 401: Authentication Fails (no such user))")
    assert "what to do: check the key given with --api-key" in text
    html = report.read_text()
    assert "badge error" in html and "The audited endpoint cannot be used" in html
    assert "<th>what to do</th>" in html and "Authentication Fails" in html
    res = CliRunner().invoke(app, ["verify", "--help"])
    assert "4 error" in res.stdout and "3 inconclusive" in res.stdout


def test_report_renders_an_error_plainly() -> None:
    result = _audit(f"http://127.0.0.1:{_closed_port()}")
    html = render(result)
    assert "<section class='stopped' id='error'>" in html
    assert "connection refused" in html and "no answer" in html


def test_http_job_ends_done_with_the_error(bench: Bench,
                                           locked: tuple[DeepSeekEmulator, LoopbackServer]) -> None:
    with httpx.Client(base_url=bench.gateway.url, timeout=30) as c:
        resp = c.post("/v1/verify", json={"model": "deepseek-chat", "claim": "deepseek-v3",
                                           "base_url": locked[1].url, "api_key": "sk-wrong",
                                           "seed": 1})
        assert resp.status_code == 202, resp.text
        job_id = resp.json()["id"]
        deadline = time.monotonic() + 30
        while (job := c.get(f"/v1/verify/{job_id}").json())["status"] not in ("done", "failed"):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert job["status"] == "done" and job["error"] is None
        assert job["result"]["verdict"] == "error"
        assert job["result"]["error"]["status"] == 401
        assert job["spent"] == job["result"]["requests"] == 2 and job["budget"] == 40
        page = c.get(f"/v1/verify/{job_id}/report.html")
        assert page.status_code == 200 and "refused the API key" in page.text
        assert "sk-wrong" not in page.text
