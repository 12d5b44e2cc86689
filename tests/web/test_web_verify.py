"""The verifier page: audit the gateway's own embedded model with the cheapest settings,
watch the progress per check, read the verdict, download the JSON and HTML reports.

Uses the verifier's routes (manxue.server.routes.verify: POST /v1/verify, GET /v1/verify/{id},
GET /v1/verify/{id}/report.html).
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.web.conftest import LOCAL, SHOTS, Browser, Site


def test_verify_the_local_model(browser: Browser, site: Site, tmp_path: Path) -> None:
    page = browser.open("/verify")
    page.get_by_label("API key for this gateway").fill(site.key)
    page.get_by_role("button", name="Save", exact=True).click()
    page.get_by_label("Model", exact=True).select_option(LOCAL)
    page.get_by_label("Claimed model").fill("smollm2-135m-instruct")
    page.get_by_text("Checks and reference").click()
    if SHOTS:  # the documentation's screenshot: the default checks, this gateway as reference
        page.get_by_label("Reference model").fill(LOCAL)
        expected = 4
    else:  # the cheapest audit: tokenizer and protocol
        page.get_by_label("Request budget").fill("8")
        for name in ("Capability probes", "Distribution vs reference"):
            page.get_by_label(name).uncheck()
        expected = 2
    page.get_by_role("button", name="Run the audit").click()
    page.locator("#progress li[data-check='tokenizer']").wait_for()
    verdict = page.locator("#verdict-value")
    verdict.wait_for(timeout=240_000)
    assert verdict.inner_text() in ("authentic", "substituted", "inconclusive")
    checks = page.locator("#check-results li")
    assert checks.count() == expected
    assert page.locator("#check-results li[data-check='tokenizer'] .badge").inner_text() in (
        "pass", "fail", "skip")
    assert page.locator("#check-results details pre").count() >= 1  # the evidence
    budget = "40" if SHOTS else "8"
    assert f"of {budget} requests spent on the endpoint" in page.locator("#progress-text").inner_text()
    browser.screenshot("verify.png", top="result-title")

    with page.expect_download() as got:
        page.get_by_role("button", name="Download JSON").click()
    saved = tmp_path / "verify.json"
    got.value.save_as(saved)
    result = json.loads(saved.read_text())
    assert result["verdict"] == verdict.inner_text() and len(result["checks"]) == expected

    with page.expect_download() as got:
        page.get_by_role("button", name="Download HTML report").click()
    report = tmp_path / "verify.html"
    got.value.save_as(report)
    assert "<html" in report.read_text().lower()


def test_an_unusable_reference_shows_the_error_verdict(browser: Browser, site: Site) -> None:
    """A reference model the gateway does not serve: the audit stops after the reference's
    first two 404s, and the page says whose endpoint failed, why, and what to do."""
    page = browser.open("/verify")
    page.get_by_label("API key for this gateway").fill(site.key)
    page.get_by_role("button", name="Save", exact=True).click()
    page.get_by_label("Model", exact=True).select_option(LOCAL)
    page.get_by_label("Claimed model").fill("smollm2-135m-instruct")
    page.get_by_label("Request budget").fill("8")
    page.get_by_text("Checks and reference").click()
    for name in ("Tokenizer fingerprint", "Protocol conformance", "Capability probes"):
        page.get_by_label(name).uncheck()
    page.get_by_label("Reference model").fill("no-such-model")
    page.get_by_role("button", name="Run the audit").click()
    verdict = page.locator("#verdict-value")
    verdict.wait_for(timeout=120_000)
    assert verdict.inner_text() == "error"
    box = page.locator("#verdict-error").inner_text()
    assert "The reference cannot be used (HTTP 404)" in box
    assert "no model 'no-such-model'" in box and "What to do:" in box and "--reference-model" in box
    assert "of 8 requests spent on the endpoint" in page.locator("#progress-text").inner_text()
    assert page.locator("#check-results li[data-check='distribution'] .badge").inner_text() == "skip"
    browser.screenshot("verify-error.png", top="progress-title")
