"""Every page: served from the package with a strict CSP and cache headers, labelled controls,
usable by keyboard, no sideways scrolling at phone width (375 px)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from manxue.server.routes.web import CSP
from tests.web.conftest import LOCAL, Browser, Site

PAGES = ["/", "/verify", "/dashboard", "/plan"]

UNLABELLED = """() => [...document.querySelectorAll('input, select, textarea, button')]
  .filter((e) => e.type !== 'hidden' && !(e.labels && e.labels.length)
                 && !e.getAttribute('aria-label') && !e.getAttribute('aria-labelledby')
                 && !(e.tagName === 'BUTTON' && e.textContent.trim()))
  .map((e) => e.outerHTML.slice(0, 120))"""


def test_pages_and_assets_headers(site: Site) -> None:
    with httpx.Client(base_url=site.url) as c:
        for path in PAGES:
            r = c.get(path)
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
            assert r.headers["content-security-policy"] == CSP
            assert r.headers["cache-control"] == "no-cache"
            assert c.get(path, headers={"If-None-Match": r.headers["etag"]}).status_code == 304
            assert "{{static}}" not in r.text
        page = c.get("/").text
        js = page.split('<script type="module" src="')[1].split('"')[0]
        assert js.startswith("/static/") and js.endswith("/js/chat.js")
        r = c.get(js, headers={"Accept-Encoding": "gzip"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
        assert r.headers["content-encoding"] == "gzip"
        assert "immutable" in r.headers["cache-control"]
        stale = js.replace(js.split("/")[2], "000000000000")
        assert c.get(stale).status_code == 404
        assert c.get("/static/x/../../pyproject.toml").status_code == 404
        assert c.get("/favicon.ico").headers["content-type"].startswith("image/svg+xml")
        opts = c.get("/web/plan-options").json()
        assert "deepseek-r1" in {m["id"] for m in opts["models"]}
        assert "h800" in {h["id"] for h in opts["hardware"]}
    assert "'self'" in CSP and "http" not in CSP and "unsafe" not in CSP


def test_request_usage_is_private_to_its_key(site: Site) -> None:
    r = site.chat(site.key, LOCAL, "hi", max_tokens=3)
    assert r.status_code == 200
    rid = r.headers["x-request-id"]
    own = httpx.get(f"{site.url}/v1/usage/{rid}", headers={"Authorization": f"Bearer {site.key}"})
    assert own.status_code == 200, own.text
    body = own.json()
    assert body["completion_tokens"] == r.json()["usage"]["completion_tokens"]
    assert body["currency"] == "USD" and float(body["cost"]) > 0
    assert "deployment" not in body and "upstream_cost" not in body
    other = site.create_key(tenant="other")["key"]
    theirs = httpx.get(f"{site.url}/v1/usage/{rid}", headers={"Authorization": f"Bearer {other}"})
    assert theirs.status_code == 404 and theirs.json()["error"]["code"] == "request_not_found"
    assert httpx.get(f"{site.url}/v1/usage/{rid}").status_code == 401


@pytest.mark.parametrize("path", PAGES)
def test_page_at_phone_width_labelled_and_keyboard_usable(browser: Browser, path: str) -> None:
    page: Any = browser.page
    page.set_viewport_size({"width": 375, "height": 740})
    browser.open(path)
    page.wait_for_load_state("networkidle")
    assert page.evaluate(UNLABELLED) == []
    overflow = page.evaluate("() => document.documentElement.scrollWidth")
    assert overflow <= 375, f"{path} is {overflow} px wide at 375 px"
    page.keyboard.press("Tab")  # the skip link comes first and is visible when focused
    skip = page.locator(":focus")
    assert skip.get_attribute("class") == "skip-link"
    assert skip.evaluate("(e) => getComputedStyle(e).outlineStyle") != "none"
    assert skip.bounding_box()["y"] >= 0
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    focused = page.locator(":focus")
    assert focused.evaluate("(e) => getComputedStyle(e).outlineStyle") != "none"
