"""The dashboard after traffic: non-zero charts, totals by group, live breakers, top errors."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx

from manxue.accounting.ledger import insert_rows
from manxue.accounting.money import cost_nano
from tests.web.conftest import ADMIN, LOCAL, REASONER, SHOTS, Browser, Site


def _traffic(site: Site) -> None:
    for text in ("one", "two", "three"):
        r = site.chat(site.key, REASONER, f"hello {text}")
        assert r.status_code == 200, r.text
    r = site.chat(site.key, LOCAL, "hi", max_tokens=4)
    assert r.status_code == 200, r.text
    broke = site.create_key(tenant="broke-dash", balance="0")["key"]
    assert site.chat(broke, LOCAL, "hi", max_tokens=4).status_code == 402


def _backdated_day(site: Site) -> None:
    """For the documentation's screenshot only: ledger rows spread over the past day."""
    meter = site.meter
    keys = site.admin.get("/admin/keys").json()["data"]
    rng = random.Random(7)
    now = datetime.now(UTC)
    prices = {LOCAL: ("0.01", "0.05", "0.20", None),
              REASONER: ("0.14", "0.55", "2.19", ("0.07", "0.27", "1.10"))}
    rows: list[dict[str, Any]] = []
    for hour in range(23, 0, -1):
        for n in range(rng.randint(2, 5) + (6 if 9 <= (now.hour - hour) % 24 <= 18 else 0)):
            model = rng.choice([LOCAL, REASONER, REASONER])
            key = rng.choice(keys[:2])
            prompt, out = rng.randint(200, 2400), rng.randint(50, 900)
            hit = int(prompt * rng.uniform(0.2, 0.8))
            hp, mp, op, up = prices[model]
            cost = cost_nano(hit, prompt - hit, out, Decimal(hp), Decimal(mp), Decimal(op))
            upstream = cost_nano(hit, prompt - hit, out, *(Decimal(x) for x in up)) if up else 0
            status = "error" if rng.random() < 0.03 else "ok"
            rows.append({
                "request_id": f"demo-{hour}-{n}",
                "at": now - timedelta(hours=hour, minutes=rng.randint(0, 59)),
                "tenant_id": key["tenant_id"], "key_id": key["id"], "model": model,
                "deployment": "local-smollm2" if model == LOCAL else "emulator", "stream": True,
                "status": status, "prompt_tokens": prompt, "cache_hit_tokens": hit,
                "cache_miss_tokens": prompt - hit, "completion_tokens": out, "reasoning_tokens": 0,
                "usage_source": "upstream", "price_list": "web-usd", "currency": "USD",
                "price_hit": hp, "price_miss": mp, "price_output": op,
                "cost_nano": cost if status == "ok" else 0,
                "upstream_cost_nano": upstream if status == "ok" else 0,
                "latency_ms": rng.randint(300, 9000), "ttft_ms": rng.randint(80, 900), "attempts": 1,
                "error": "model 'deepseek-reasoner' is busy or unavailable" if status == "error" else None,
            })
    insert_rows(meter.store.engine, rows)


def test_dashboard_after_traffic(browser: Browser, site: Site) -> None:
    _traffic(site)
    if SHOTS:
        _backdated_day(site)
    page = browser.open("/dashboard")
    page.get_by_label("Admin key").fill(ADMIN)
    page.get_by_role("button", name="Save", exact=True).click()
    page.wait_for_selector("body[data-loaded]")
    for chart in ("requests", "tokens", "money", "margin"):
        fig = page.locator(f"#chart-{chart}")
        assert float(fig.get_attribute("data-max") or 0) > 0, chart
        assert fig.locator("svg path.line").count() >= 1
    assert float(page.locator("#chart-cache").get_attribute("data-points") or 0) > 0
    assert int(page.locator("#kpis").get_attribute("data-requests") or 0) >= 4
    assert float(page.locator("#chart-group-revenue").get_attribute("data-max") or 0) > 0
    assert page.locator("#group-table tbody tr").filter(has_text=REASONER).count() == 1
    assert page.locator("#deployments [data-breaker]").count() == 2
    assert page.locator("#errors-http").filter(has_text="402").count() == 1
    browser.screenshot("dashboard.png", top="dash-status")

    page.get_by_label("Split by").select_option("tenant")
    page.locator("#groups-title").filter(has_text="By tenant").wait_for()
    assert page.locator("#chart-requests .legend li").filter(has_text="acme").count() == 1


def test_dashboard_series_api(site: Site) -> None:
    admin = httpx.Client(base_url=site.url, headers={"Authorization": f"Bearer {ADMIN}"})
    assert site.chat(site.key, REASONER, "for the series").status_code == 200
    r = admin.get("/admin/dashboard/series", params={"bucket": "hour", "by": "model"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["buckets"]) == 24 and body["currencies"] == ["USD"]
    by_model = {s["group"]: s for s in body["series"]}
    reasoner = by_model[REASONER]
    assert sum(reasoner["requests"]) >= 1 and reasoner["requests"][-1] >= 1
    money = reasoner["money"]["USD"]
    assert float(money["revenue"][-1]) > float(money["upstream_cost"][-1]) > 0
    day = admin.get("/admin/dashboard/series", params={"bucket": "day"}).json()
    assert len(day["buckets"]) == 30 and [s["group"] for s in day["series"]] == ["all"]
    assert admin.get("/admin/dashboard/series", params={"bucket": "week"}).status_code == 422
    assert admin.get("/admin/dashboard/series", params={"by": "colour"}).status_code == 422
    assert httpx.get(site.url + "/admin/dashboard/series").status_code == 401
    errors = admin.get("/admin/dashboard/errors").json()
    assert set(errors) >= {"requests", "http", "upstream", "stream_interrupted"}
