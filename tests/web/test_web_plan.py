"""The planner page computes a plan: verdict, tables, charts, and a shareable address."""

from __future__ import annotations

from tests.web.conftest import Browser


def test_plan_page_computes_a_plan(browser: Browser) -> None:
    page = browser.open("/plan")
    page.get_by_label("Model").select_option("deepseek-r1")
    page.get_by_label("Hardware").select_option("h800")
    page.get_by_label("Accelerators").fill("16")
    page.get_by_label("Sell at price list").select_option("deepseek-r1-2025-02")
    page.get_by_role("button", name="Plan", exact=True).click()
    page.wait_for_selector("#result[data-ready]")
    assert "Fits: up to 835 sequences" in page.locator("#verdict").inner_text()
    memory = page.locator("#table-memory").inner_text()
    assert "70,272 B" in memory and "671.0 GB" in memory
    assert "1136%" in page.locator("#table-price").inner_text()
    assert float(page.locator("#chart-batch-tps").get_attribute("data-max") or 0) > 30_000
    assert page.locator("#chart-memory svg rect").count() == 3
    assert "model=deepseek-r1" in page.url
    browser.screenshot("plan.png", top="result-title")

    page.get_by_label("Accelerators").fill("8")
    page.get_by_role("button", name="Plan", exact=True).click()
    page.locator("#verdict").filter(has_text="Does not fit").wait_for()


def test_plan_error_points_at_the_field(browser: Browser) -> None:
    page = browser.open("/plan?model=deepseek-r1&hardware=h800&gpus=0")
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "gpus" in alert.inner_text()
    assert page.locator("#gpus").get_attribute("aria-invalid") == "true"
