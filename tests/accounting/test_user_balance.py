"""GET /user/balance in DeepSeek's shape, for the calling key only."""

from __future__ import annotations

from decimal import Decimal

import httpx

from manxue.testing.deepseek_emulator import Behavior


def _balance(billing, key: str | None, path: str = "/user/balance") -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.get(billing.gw.url + path, headers=headers, timeout=10)


def test_a_prepaid_key_sees_its_own_balance_fall_as_it_spends(billing, upstream):
    key = billing.create_key(name="prod", balance="5")
    other = billing.create_key(name="other", balance="100")
    r = _balance(billing, key["key"])
    assert r.status_code == 200, r.text
    assert r.json() == {"is_available": True, "balance_infos": [
        {"currency": "USD", "total_balance": "5.00", "granted_balance": "0.00",
         "topped_up_balance": "5.00"}]}
    upstream.emu.push(Behavior(content=" ".join(["word"] * 2000)))
    assert billing.chat(key["key"]).status_code == 200
    [row] = billing.rows()
    info = _balance(billing, key["key"], "/v1/user/balance").json()["balance_infos"][0]
    left = Decimal(5) - Decimal(row["cost"])
    assert Decimal(info["total_balance"]) == left.quantize(Decimal("0.01"), rounding="ROUND_DOWN")
    assert Decimal(info["total_balance"]) < 5
    assert _balance(billing, other["key"]).json()["balance_infos"][0]["total_balance"] == "100.00"


def test_postpaid_keys_have_no_balance_and_strangers_get_401(billing):
    postpaid = billing.create_key(name="invoice")
    assert _balance(billing, postpaid["key"]).json() == {"is_available": True, "balance_infos": []}
    r = _balance(billing, "sk-not-a-key")
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    assert _balance(billing, None).status_code == 401
