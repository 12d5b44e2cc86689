"""A prepaid balance never goes below zero: the reservation covers every choice (`n`), and
usage an upstream reports beyond the reservation is recorded as unbilled, never charged."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import httpx
import pytest

from manxue.testing.deepseek_emulator import Behavior
from tests.accounting.conftest import Billing

LONG = " ".join(["word"] * 2000)


def _balance(billing: Billing, key_id: str) -> Decimal:
    keys = billing.admin.get("/admin/keys").json()["data"]
    return Decimal(next(k["balance"] for k in keys if k["id"] == key_id))


def _unbilled_metric(billing: Billing) -> float:
    text = httpx.get(billing.gw.url + "/metrics").text
    for line in text.splitlines():
        if line.startswith('manxue_unbilled_total{currency="USD"}'):
            return float(line.split()[-1])
    return 0.0


def test_n_is_reserved_for_every_choice(billing, upstream):
    """An upstream that honours `n` (vLLM, OpenAI) once took a 0.01 key to -0.246."""
    upstream.emu.default = Behavior(honour_n=True, content=LONG)
    key = billing.create_key(balance="0.01")
    r = billing.chat(key["key"], n=128)
    assert r.status_code == 402, r.text
    assert r.json()["error"]["type"] == "insufficient_quota"
    assert upstream.emu.received == []  # refused before any upstream call
    assert _balance(billing, key["id"]) == Decimal("0.01")


def test_each_choice_is_charged_when_the_reservation_covers_it(billing, upstream):
    upstream.emu.default = Behavior(honour_n=True)
    key = billing.create_key(balance="1")
    r = billing.chat(key["key"], n=3, max_tokens=20)
    assert r.status_code == 200 and len(r.json()["choices"]) == 3
    [row] = billing.rows()
    assert row["completion_tokens"] == 3 * 4  # "You said: hello there", three times
    assert Decimal(row["unbilled"]) == 0
    assert _balance(billing, key["id"]) == Decimal(1) - Decimal(row["cost"])


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("inflated", ["completion", "prompt"])
def test_usage_beyond_the_reservation_is_unbilled_not_charged(billing, upstream, stream, inflated):
    pad = {"completion_padding": 1_000_000} if inflated == "completion" else {"usage_padding": 1_000_000}
    upstream.emu.default = Behavior(**pad)
    key = billing.create_key(balance="0.05")
    r = billing.chat(key["key"], max_tokens=10, stream=stream)
    assert r.status_code == 200, r.text
    [row] = billing.rows()
    cost, unbilled = Decimal(row["cost"]), Decimal(row["unbilled"])
    assert unbilled > 0 and Decimal(0) < cost < Decimal("0.05")
    # the list price of what was reported, split into what was charged and what was not
    list_price = (Decimal(row["cache_miss_tokens"]) * Decimal(row["price_miss"])
                  + Decimal(row["completion_tokens"]) * Decimal(row["price_output"])) / 1_000_000
    assert abs(cost + unbilled - list_price) < Decimal("1e-8")
    assert _balance(billing, key["id"]) == Decimal("0.05") - cost >= 0
    assert _unbilled_metric(billing) == pytest.approx(float(unbilled))
    [total] = billing.admin.get("/admin/usage", params={"by": "key"}).json()["data"]
    assert Decimal(total["unbilled"]) == unbilled


def test_a_burst_of_inflating_answers_never_overdraws(billing, upstream):
    upstream.emu.default = Behavior(completion_padding=50_000, first_byte_delay=0.05)
    key = billing.create_key(balance="0.002")

    async def burst() -> list[int]:
        async with httpx.AsyncClient(timeout=30) as c:
            rs = await asyncio.gather(*[c.post(
                billing.gw.url + "/v1/chat/completions",
                headers={"Authorization": f"Bearer {key['key']}"},
                json={"model": "deepseek-chat", "max_tokens": 200,
                      "messages": [{"role": "user", "content": "hi"}]}) for _ in range(40)])
            return [r.status_code for r in rs]

    codes = asyncio.run(burst())
    assert set(codes) <= {200, 402} and 200 in codes and 402 in codes
    rows = billing.rows()
    assert len(rows) == codes.count(200)
    assert all(Decimal(r["unbilled"]) > 0 for r in rows)
    assert _balance(billing, key["id"]) >= 0
    assert billing.chat(key["key"], max_tokens=200).status_code == 402  # still refused, not negative


def test_a_postpaid_key_is_charged_what_was_reported(billing, upstream):
    """Without a balance or budget nothing bounds the charge: the invoice shows the usage."""
    upstream.emu.default = Behavior(completion_padding=1000)
    key = billing.create_key()
    assert billing.chat(key["key"], max_tokens=10).status_code == 200
    [row] = billing.rows()
    assert Decimal(row["unbilled"]) == 0 and row["completion_tokens"] > 1000
