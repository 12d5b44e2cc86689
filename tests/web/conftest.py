"""Fixtures for the web pages: one gateway with billing (the embedded SmolLM2 and a DeepSeek
emulator that reasons), its admin API and keys, and Debian's chromium driven by Playwright.

Every page a test opens records each network request the browser makes; the test fails if
one goes to any host but the gateway.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from aiohttp import web

from manxue.accounting.meter import Meter
from manxue.server.app import build_app
from manxue.server.state import STATE_KEY
from manxue.settings import settings_from_dict
from manxue.testing.deepseek_emulator import Behavior, DeepSeekEmulator
from manxue.testing.loopback import LoopbackServer

CHROMIUM = os.environ.get("MANXUE_CHROMIUM", "/usr/bin/chromium")
ADMIN = "admin-secret-for-web-tests"
LOCAL = "smollm2"
REASONER = "deepseek-reasoner"
PRICES = """
[[list]]
id = "web-usd"
currency = "USD"
source = "tests: resale prices"

[[list.entry]]
model = "smollm2"
hit = 0.01
miss = 0.05
output = 0.20

[[list.entry]]
model = "deepseek-reasoner"
hit = 0.14
miss = 0.55
output = 2.19

[[list]]
id = "upstream-usd"
currency = "USD"

[[list.entry]]
model = "deepseek-reasoner"
hit = 0.07
miss = 0.27
output = 1.10
"""
SHOTS = os.environ.get("MANXUE_SCREENSHOTS")  # a folder: save each page's screenshot there


class Site:
    """The gateway under test, its admin API and the keys the tests use."""

    def __init__(self, server: LoopbackServer, emulator: DeepSeekEmulator) -> None:
        self.server = server
        self.app: web.Application = server._app_or_factory  # type: ignore[assignment]
        self.url = server.url
        self.emulator = emulator
        self.admin = httpx.Client(base_url=self.url, timeout=30,
                                  headers={"Authorization": f"Bearer {ADMIN}"})
        self.key = self.create_key(tenant="acme", balance="5")["key"]

    @property
    def meter(self) -> Meter:
        meter = self.app[STATE_KEY].meter
        assert meter is not None
        return meter

    def create_key(self, **fields: Any) -> dict[str, Any]:
        r = self.admin.post("/admin/keys", json=fields)
        assert r.status_code == 201, r.text
        body: dict[str, Any] = r.json()
        return body

    def chat(self, key: str, model: str, text: str, **extra: Any) -> httpx.Response:
        body = {"model": model, "messages": [{"role": "user", "content": text}], **extra}
        return httpx.post(self.url + "/v1/chat/completions", json=body, timeout=60,
                          headers={"Authorization": f"Bearer {key}"})


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    emu = DeepSeekEmulator(model=REASONER)
    emu.record = False
    emu.default = Behavior(reasoning="The user greets me. A short, friendly reply fits.", chunks=4,
                           chunk_delay=0.02, first_byte_delay=0.12, keepalive_every=0.04)
    upstream = LoopbackServer(emu.app()).start()
    data = tmp_path_factory.mktemp("web-gw")
    (data / "prices.toml").write_text(PRICES)
    settings = settings_from_dict({
        "data_dir": str(data),
        "deployments": [
            # one thread: llama.cpp's spinning worker threads crawl on a busy, shared CPU
            {"name": "local-smollm2", "model": LOCAL, "kind": "local",
             "options": {"n_ctx": 2048, "n_parallel": 2, "n_threads": 1}},
            {"name": "emulator", "model": REASONER, "base_url": upstream.url,
             "upstream_model": REASONER, "cost_price_list": "upstream-usd"},
        ],
        "billing": {"default_price_list": "web-usd", "price_lists": [str(data / "prices.toml")],
                    "flush_interval": 0.1, "key_refresh_interval": 0.2},
        "models": {LOCAL: {"max_output_tokens": 256}},
    })
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MANXUE_ADMIN_KEY", ADMIN)
        app = build_app(settings)
        server = LoopbackServer(app).start()
        try:
            yield Site(server, emu)
        finally:
            server.stop()
            upstream.stop()


@pytest.fixture(scope="session")
def browser_context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Debian's chromium, headless, with a fresh profile; the browser tests are skipped
    without it (apt-get install -y chromium) or without the playwright package."""
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with playwright.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"],
            viewport={"width": 1280, "height": 900})
        context.set_default_timeout(15_000)
        try:
            yield context
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


class Browser:
    """A fresh page on the gateway's origin, with every request it makes recorded."""

    def __init__(self, context: Any, site: Site) -> None:
        self.site = site
        self.requests: list[str] = []
        self.page = context.new_page()
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def open(self, path: str) -> Any:
        self.page.goto(self.site.url + path)
        return self.page

    def foreign(self) -> list[str]:
        """Requests that went anywhere but the gateway."""
        origin = urlsplit(self.site.url)
        out = []
        for url in self.requests:
            parts = urlsplit(url)
            if parts.scheme in ("data", "blob"):
                continue
            if (parts.scheme, parts.hostname, parts.port) != (origin.scheme, origin.hostname, origin.port):
                out.append(url)
        return out

    def screenshot(self, name: str, top: str | None = None) -> None:
        """Save the viewport as SHOTS/name, scrolled so that element #top is at the top."""
        if SHOTS:
            if top:
                self.page.evaluate("(id) => document.getElementById(id).scrollIntoView()", top)
            Path(SHOTS).mkdir(parents=True, exist_ok=True)
            full = bool(os.environ.get("MANXUE_SCREENSHOTS_FULL"))
            self.page.screenshot(path=str(Path(SHOTS) / name), full_page=full)


@pytest.fixture
def browser(browser_context: Any, site: Site) -> Iterator[Browser]:
    b = Browser(browser_context, site)
    b.page.goto(site.url + "/health")
    b.page.evaluate("localStorage.clear()")
    try:
        yield b
    finally:
        b.page.close()
    assert b.foreign() == [], f"requests to other hosts: {b.foreign()}"
    assert b.errors == [], f"errors in the page: {b.errors}"
