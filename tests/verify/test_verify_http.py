"""POST /v1/verify runs an audit as a job; progress, result and report can be fetched."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.verify.conftest import CLAIM, Bench


def _wait(client: httpx.Client, job_id: str, limit: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/v1/verify/{job_id}").json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish")


def test_job_audits_the_gateway_itself(bench: Bench) -> None:
    with httpx.Client(base_url=bench.gateway.url, timeout=30) as c:
        resp = c.post("/v1/verify", json={"model": "honest", "claim": CLAIM, "seed": 2,
                                           "checks": ["tokenizer", "protocol"],
                                           "reference_model": "reference"})
        assert resp.status_code == 202, resp.text
        started = resp.json()
        assert started["status"] in ("queued", "running")
        assert resp.headers["Location"] == f"/v1/verify/{started['id']}"
        job = _wait(c, started["id"])
        assert job["status"] == "done", job["error"]
        assert [p["name"] for p in job["progress"]] == ["tokenizer", "protocol"]
        assert all(p["state"] == "done" for p in job["progress"])
        result = job["result"]
        assert result["settings"]["base_url"].startswith("http://127.0.0.1:")
        assert result["checks"][0]["status"] == "pass" and result["requests"] == 7
        page = c.get(f"/v1/verify/{started['id']}/report.html")
        assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
        assert "Tokenizer fingerprint" in page.text and "api_key" not in page.text


def test_bad_requests_and_unknown_jobs(bench: Bench) -> None:
    with httpx.Client(base_url=bench.gateway.url, timeout=10) as c:
        r = c.post("/v1/verify", json={"claim": CLAIM})
        assert r.status_code == 422 and r.json()["error"]["param"] == "model"
        r = c.post("/v1/verify", json={"model": "honest", "checks": ["telepathy"]})
        assert r.status_code == 422 and "telepathy" in r.json()["error"]["message"]
        r = c.post("/v1/verify", json={"model": "honest", "colour": "red"})
        assert r.status_code == 422 and r.json()["error"]["param"] == "colour"
        r = c.post("/v1/verify", content=b"{not json")
        assert r.status_code == 400
        r = c.get("/v1/verify/vrf-nope")
        assert r.status_code == 404 and r.json()["error"]["code"] == "verify_job_not_found"
