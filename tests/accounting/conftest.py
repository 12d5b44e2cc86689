"""Fixtures for metering tests: a gateway with billing on, and its admin API."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import Gateway, Upstream, deployment

ADMIN = "admin-secret-for-tests"
PRICE_LIST = "resale-usd"  # USD per 1M: hit 0.07, miss 0.27, output 1.10 (V3's Feb-2025 prices)
PRICES_TOML = """
[[list]]
id = "resale-usd"
currency = "USD"
source = "tests: DeepSeek V3 Feb-2025 list prices, open-ended"

[[list.entry]]
model = "deepseek-chat"
hit = 0.07
miss = 0.27
output = 1.10

[[list.entry]]
model = "deepseek-reasoner"
hit = 0.14
miss = 0.55
output = 2.19

[[list]]
id = "resale-plus-20"
base = "resale-usd"
markup_percent = 20

[[list]]
id = "upstream-cost"
currency = "USD"

[[list.entry]]
model = "deepseek-chat"
hit = 0.028
miss = 0.14
output = 0.28
"""


class Billing:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.admin = httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {ADMIN}"},
                                  timeout=30)

    def create_key(self, **fields: Any) -> dict[str, Any]:
        fields.setdefault("tenant", "acme")
        r = self.admin.post("/admin/keys", json=fields)
        assert r.status_code == 201, r.text
        return r.json()

    def rows(self, **params: Any) -> list[dict[str, Any]]:
        self.flush()
        r = self.admin.get("/admin/usage", params=params)
        assert r.status_code == 200, r.text
        return r.json()["data"]

    def flush(self) -> None:
        from manxue.server.state import STATE_KEY

        meter = self.gw.app[STATE_KEY].meter
        assert meter is not None
        self.gw.server.call(meter.writer.flush())

    def chat(self, key: str | None, **body: Any) -> httpx.Response:
        body.setdefault("model", "deepseek-chat")
        body.setdefault("messages", [{"role": "user", "content": "hello there"}])
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.post(self.gw.url + "/v1/chat/completions", json=body, headers=headers, timeout=30)


@pytest.fixture
def make_billing(make_gateway: Callable[..., Gateway], upstream: Upstream,
                 monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., Billing]:
    monkeypatch.setenv("MANXUE_ADMIN_KEY", ADMIN)
    prices = tmp_path / "prices.toml"
    prices.write_text(PRICES_TOML)

    def make(deployments: list[dict[str, Any]] | None = None, **top: Any) -> Billing:
        billing = {"default_price_list": PRICE_LIST, "flush_interval": 0.1,
                   "key_refresh_interval": 0.2, "price_lists": [str(prices)],
                   **top.pop("billing", {})}
        deps = deployments or [deployment(upstream, "primary")]
        return Billing(make_gateway(deps, billing=billing, **top))

    return make


@pytest.fixture
def billing(make_billing: Callable[..., Billing]) -> Billing:
    return make_billing()
