"""Admission and usage rules beyond the basics: monthly budgets, Retry-After on every 429,
unpriced models, OpenAI-style cache usage, open mode off loopback, totals by key."""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal

import httpx
import pytest

from manxue.errors import AuthenticationFailed
from manxue.server.client_address import is_loopback
from manxue.server.state import STATE_KEY
from manxue.testing.deepseek_emulator import Behavior
from tests.helpers import deployment


def test_monthly_budget(billing):
    key = billing.create_key(monthly_budget="0.00005")["key"]
    codes = [billing.chat(key, max_tokens=5).status_code for _ in range(20)]
    served = codes.count(200)
    assert served >= 2 and codes[served:] == [429] * (20 - served)
    r = billing.chat(key, max_tokens=5)
    assert r.json()["error"]["code"] == "budget_exceeded"
    assert int(r.headers["Retry-After"]) > 0  # to the end of the UTC month
    assert sum(Decimal(row["cost"]) for row in billing.rows()) <= Decimal("0.00005")


def test_every_429_says_when_to_retry(billing, upstream):
    tkey = billing.create_key(tpm=12)["key"]
    assert [billing.chat(tkey).status_code for _ in range(2)] == [200, 200]
    r = billing.chat(tkey)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    assert r.json()["error"]["type"] == "rate_limit_error"

    ckey = billing.create_key(max_concurrency=1)["key"]
    upstream.emu.default = Behavior(first_byte_delay=0.8)

    async def two() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30) as c:
            return await asyncio.gather(*[c.post(
                billing.gw.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {ckey}"},
                json={"model": "deepseek-chat", "messages": [{"role": "user", "content": "x"}]})
                for _ in range(2)])

    refused = [r for r in asyncio.run(two()) if r.status_code == 429]
    assert len(refused) == 1 and int(refused[0].headers["Retry-After"]) >= 1


def test_a_listed_key_is_never_served_an_unpriced_model(make_billing, upstream):
    bill = make_billing([deployment(upstream, "primary"),
                         deployment(upstream, "side", model="side-model")])
    key = bill.create_key()["key"]  # postpaid, priced by the default list (no side-model)
    assert bill.chat(key).status_code == 200
    r = bill.chat(key, model="side-model")
    assert r.status_code == 403 and r.json()["error"]["code"] == "model_not_priced"
    assert [row["model"] for row in bill.rows()] == ["deepseek-chat"]


def test_without_any_price_list_a_postpaid_key_is_metered_in_tokens(make_billing):
    bill = make_billing(billing={"default_price_list": None})
    key = bill.create_key()["key"]
    assert bill.chat(key).status_code == 200
    [row] = bill.rows()
    assert row["cost"] == "0" and row["price_list"] is None
    assert row["prompt_tokens"] > 0 and row["completion_tokens"] > 0


@pytest.mark.parametrize("stream", [False, True])
def test_openai_style_cached_tokens_are_billed_as_hits(billing, upstream, stream):
    key = billing.create_key()["key"]
    upstream.emu.push(Behavior(cache_hit_tokens=2, openai_usage=True))
    c = billing.gw.client(api_key=key)
    msgs = [{"role": "user", "content": "hello there"}]
    if stream:
        list(c.chat.completions.create(model="deepseek-chat", messages=msgs, stream=True))
    else:
        c.chat.completions.create(model="deepseek-chat", messages=msgs)
    [row] = billing.rows()
    assert (row["prompt_tokens"], row["cache_hit_tokens"], row["cache_miss_tokens"]) == (6, 2, 4)


def test_open_mode_serves_only_this_machine_and_says_so(make_billing, caplog):
    with caplog.at_level(logging.WARNING):
        bill = make_billing()
    assert any("no API keys exist" in r.getMessage() for r in caplog.records)
    meter = bill.gw.app[STATE_KEY].meter
    assert meter.authenticate(None, None, True) is None
    assert meter.authenticate(None, None, lambda: True) is None
    for remote in (False, lambda: False):
        with pytest.raises(AuthenticationFailed):
            meter.authenticate(None, None, remote)
    # which addresses are this machine's: the server's rule (client_address.is_loopback)
    assert all(is_loopback(a) for a in ("127.0.0.1", "::1", "::ffff:127.0.0.1", "127.9.9.9"))
    assert not any(is_loopback(a) for a in ("10.0.0.5", "192.168.1.20", "2001:db8::1", None))


def test_totals_by_key(billing):
    a, b = billing.create_key(), billing.create_key()
    for _ in range(2):
        assert billing.chat(a["key"]).status_code == 200
    assert billing.chat(b["key"]).status_code == 200
    billing.flush()
    data = billing.admin.get("/admin/usage", params={"by": "key"}).json()["data"]
    by = {row["key"]: row["requests"] for row in data}  # a key is shown by its prefix
    assert by == {a["prefix"]: 2, b["prefix"]: 1}
    assert sum(Decimal(row["revenue"]) for row in data) == sum(
        Decimal(row["cost"]) for row in billing.rows())
