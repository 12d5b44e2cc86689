"""Exact token billing: prices, cache hits, reasoning, missing usage, failover, disconnects,
balances under concurrency, reports and invoices."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from decimal import Decimal

import httpx
import orjson

from manxue.accounting.money import cost_nano, from_nano
from manxue.testing.deepseek_emulator import Behavior
from tests.helpers import deployment, wait_until

V3 = (Decimal("0.07"), Decimal("0.27"), Decimal("1.10"))


def _cost(hit: int, miss: int, out: int, prices=V3) -> Decimal:
    return from_nano(cost_nano(hit, miss, out, *prices))


def test_ledger_row_is_complete_and_its_cost_reproducible(billing, upstream):
    key = billing.create_key(name="prod", balance="5")
    upstream.emu.push(Behavior(cache_hit_tokens=2, reasoning="mull it over"))
    r = billing.chat(key["key"], messages=[{"role": "user", "content": "hello there"}])
    assert r.status_code == 200
    rid = r.headers["X-Request-Id"]
    [row] = billing.rows()
    assert row["request_id"] == rid and row["key_id"] == key["id"] and row["tenant"] == "acme"
    assert row["deployment"] == "primary" and row["status"] == "ok" and row["usage_source"] == "upstream"
    # emulator: prompt = 2 words + 4 = 6 tokens, 2 of them cached; answer 4 words + 3 reasoning
    assert (row["prompt_tokens"], row["cache_hit_tokens"], row["cache_miss_tokens"]) == (6, 2, 4)
    assert (row["completion_tokens"], row["reasoning_tokens"]) == (7, 3)
    assert row["price_list"] == "resale-usd" and row["currency"] == "USD"
    recomputed = _cost(row["cache_hit_tokens"], row["cache_miss_tokens"], row["completion_tokens"],
                       (Decimal(row["price_hit"]), Decimal(row["price_miss"]), Decimal(row["price_output"])))
    assert Decimal(row["cost"]) == recomputed == Decimal("0.00000892")
    assert row["latency_ms"] is not None and row["ttft_ms"] is not None and row["attempts"] == 1
    listed = billing.admin.get("/admin/keys").json()["data"][0]
    assert Decimal(listed["balance"]) == Decimal(5) - recomputed


def test_stream_and_whole_answer_cost_the_same(billing, upstream):
    key = billing.create_key()["key"]
    c = billing.gw.client(api_key=key)
    msgs = [{"role": "user", "content": "same words here"}]
    c.chat.completions.create(model="deepseek-chat", messages=msgs)
    list(c.chat.completions.create(model="deepseek-chat", messages=msgs, stream=True))
    a, b = billing.rows()
    assert (a["stream"], b["stream"]) == (False, True)
    assert a["cost"] == b["cost"] and a["completion_tokens"] == b["completion_tokens"] > 0


def test_missing_usage_is_counted_with_the_tokenizer_never_zero(billing, upstream):
    key = billing.create_key()["key"]
    upstream.emu.push(Behavior(usage=False), Behavior(usage=False))
    assert billing.chat(key).status_code == 200
    c = billing.gw.client(api_key=key)
    list(c.chat.completions.create(model="deepseek-chat", stream=True,
                                   messages=[{"role": "user", "content": "hello there"}]))
    for row in billing.rows():
        assert row["usage_source"] == "counted"
        assert row["prompt_tokens"] > 0 and row["completion_tokens"] > 0
        assert Decimal(row["cost"]) > 0


def test_failed_over_request_is_billed_once_for_the_answering_deployment(make_billing, upstreams):
    a, b = upstreams[0], upstreams[1]
    bill = make_billing([deployment(a, "a"), deployment(b, "b", priority=1)],
                        router={"backoff_base": 0.01})
    key = bill.create_key()["key"]
    a.emu.default = Behavior(status=503)
    assert bill.chat(key).status_code == 200
    [row] = bill.rows()
    assert row["deployment"] == "b" and row["attempts"] == 2 and Decimal(row["cost"]) > 0


def test_request_that_fails_everywhere_is_recorded_at_zero_cost(billing, upstream):
    key = billing.create_key()["key"]
    upstream.emu.default = Behavior(status=503)
    assert billing.chat(key).status_code == 503
    [row] = billing.rows()
    assert row["status"] == "error" and row["cost"] == "0" and row["error"]


def test_disconnect_mid_stream_is_billed_once_for_what_was_generated(billing, upstream):
    key = billing.create_key(balance="1")
    upstream.emu.default = Behavior(chunks=40, chunk_delay=0.05, content=" ".join(["w"] * 40))
    body = {"model": "deepseek-chat", "messages": [{"role": "user", "content": "go"}], "stream": True}
    with httpx.stream("POST", billing.gw.url + "/v1/chat/completions", json=body, timeout=10,
                      headers={"Authorization": f"Bearer {key['key']}"}) as r:
        it = r.iter_lines()
        got = [next(it) for _ in range(6)]
    assert any("w" in line for line in got)
    wait_until(billing.rows, what="the disconnected stream's ledger row")  # rows() flushes
    rows = billing.rows()
    assert len(rows) == 1
    row = rows[0]
    assert row["status"] == "incomplete" and row["usage_source"] == "counted"
    assert 1 <= row["completion_tokens"] < 40 and row["prompt_tokens"] > 0
    time.sleep(0.3)  # a quiet window: no second row may follow
    assert len(billing.rows()) == 1  # and only once


def test_price_list_per_key_and_upstream_cost_margin(make_billing, upstream):
    bill = make_billing([deployment(upstream, "primary", cost_price_list="upstream-cost")])
    key = bill.create_key(price_list="resale-plus-20")["key"]
    assert bill.chat(key).status_code == 200
    [row] = bill.rows()
    hit, miss, out = row["cache_hit_tokens"], row["cache_miss_tokens"], row["completion_tokens"]
    assert Decimal(row["price_output"]) == Decimal("1.32")  # 1.10 + 20%
    assert Decimal(row["cost"]) == _cost(hit, miss, out, tuple(p * Decimal("1.2") for p in V3))
    upstream_prices = (Decimal("0.028"), Decimal("0.14"), Decimal("0.28"))
    assert Decimal(row["upstream_cost"]) == _cost(hit, miss, out, upstream_prices)
    [by_dep] = bill.admin.get("/admin/usage", params={"by": "deployment"}).json()["data"]
    assert Decimal(by_dep["margin"]) == Decimal(row["cost"]) - Decimal(row["upstream_cost"])


def test_insufficient_balance_is_402(billing):
    key = billing.create_key(balance="0")
    r = billing.chat(key["key"])
    assert r.status_code == 402 and r.json()["error"]["type"] == "insufficient_quota"
    billing.admin.post(f"/admin/keys/{key['id']}/topup", json={"amount": "1"})
    assert billing.chat(key["key"]).status_code == 200


def test_no_overspend_under_200_concurrent_requests(billing, upstream):
    messages = [{"role": "user", "content": "hello there"}]
    body = orjson.dumps({"model": "deepseek-chat", "messages": messages, "max_tokens": 10})
    reserve = cost_nano(0, len(body), 10, *V3)  # the body's bytes bound the prompt's tokens
    balance = from_nano(reserve * 10)
    key = billing.create_key(balance=str(balance))["key"]
    upstream.emu.default = Behavior(first_byte_delay=1.0)

    async def burst() -> list[int]:
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=250)) as c:
            rs = await asyncio.gather(*[
                c.post(billing.gw.url + "/v1/chat/completions", content=body,
                       headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
                for _ in range(200)])
        return [r.status_code for r in rs]

    statuses = asyncio.run(burst())
    assert statuses.count(200) == 10
    assert statuses.count(402) == 190
    rows = [r for r in billing.rows() if r["status"] == "ok"]
    spent = sum(Decimal(r["cost"]) for r in rows)
    assert len(rows) == 10 and spent <= balance


def test_a_reused_client_request_id_neither_overspends_nor_goes_unbilled(billing, upstream):
    messages = [{"role": "user", "content": "hello there"}]
    body = orjson.dumps({"model": "deepseek-chat", "messages": messages, "max_tokens": 10})
    reserve = cost_nano(0, len(body), 10, *V3)
    balance = from_nano(reserve * 3)
    key = billing.create_key(balance=str(balance))["key"]
    upstream.emu.default = Behavior(first_byte_delay=0.5)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json",
               "X-Request-Id": "same-id-every-time"}

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30) as c:
            return list(await asyncio.gather(*[
                c.post(billing.gw.url + "/v1/chat/completions", content=body, headers=headers)
                for _ in range(20)]))

    rs = asyncio.run(burst())
    ok = [r for r in rs if r.status_code == 200]
    assert len(ok) == 3 and [r.status_code for r in rs].count(402) == 17
    assert {r.headers["X-Client-Request-Id"] for r in rs} == {"same-id-every-time"}
    rows = [r for r in billing.rows() if r["status"] == "ok"]
    assert sorted(r["request_id"] for r in rows) == sorted(r.headers["X-Request-Id"] for r in ok)
    assert {r["client_request_id"] for r in rows} == {"same-id-every-time"}
    assert sum(Decimal(r["cost"]) for r in rows) <= balance


def test_rpm_tpm_and_concurrency_limits(billing, upstream):
    key = billing.create_key(rpm=3)["key"]
    assert [billing.chat(key).status_code for _ in range(3)] == [200, 200, 200]
    r = billing.chat(key)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    assert r.json()["error"]["code"] == "rate_limit_exceeded"

    tkey = billing.create_key(tpm=12)["key"]
    assert billing.chat(tkey).status_code == 200  # uses 10 tokens of 12
    assert billing.chat(tkey).status_code == 200  # bucket had 2 left: admitted, now below zero
    assert billing.chat(tkey).status_code == 429

    ckey = billing.create_key(max_concurrency=2)["key"]
    upstream.emu.default = Behavior(first_byte_delay=0.8)

    async def three() -> list[int]:
        async with httpx.AsyncClient(timeout=30) as c:
            rs = await asyncio.gather(*[c.post(
                billing.gw.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {ckey}"},
                json={"model": "deepseek-chat", "messages": [{"role": "user", "content": "x"}]})
                for _ in range(3)])
        return sorted(r.status_code for r in rs)

    assert asyncio.run(three()) == [200, 200, 429]


def test_privacy_local_key_never_leaves_the_machine(billing):
    key = billing.create_key(privacy="local")["key"]
    r = billing.chat(key)
    assert r.status_code == 403 and r.json()["error"]["code"] == "privacy_local_unavailable"


def test_reports_and_invoice(billing, upstream):
    k1 = billing.create_key(tenant="acme")["key"]
    k2 = billing.create_key(tenant="beta")["key"]
    upstream.emu.default = Behavior(cache_hit_tokens=3)
    for k in (k1, k1, k2):
        assert billing.chat(k).status_code == 200
    summary = billing.admin.get("/admin/usage", params={"by": "tenant"}).json()["data"]
    by_tenant = {r["tenant"]: r for r in summary}
    assert by_tenant["acme"]["requests"] == 2 and by_tenant["beta"]["requests"] == 1
    assert by_tenant["acme"]["cache_hit_rate"] == 0.5  # 3 of 6 prompt tokens
    [day] = billing.admin.get("/admin/usage", params={"by": "day"}).json()["data"]
    assert day["requests"] == 3
    month = time.strftime("%Y-%m", time.gmtime())
    r = billing.admin.get("/admin/invoice", params={"tenant": "acme", "month": month})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/csv")
    lines = list(csv.reader(io.StringIO(r.text)))
    assert lines[0][0] == "tenant" and lines[1][4] == "2"
    assert lines[-1][2] == "TOTAL" and Decimal(lines[-1][9]) == Decimal(by_tenant["acme"]["revenue"])


def test_daily_budget(billing):
    key = billing.create_key(daily_budget="0.00005")
    codes = [billing.chat(key["key"], max_tokens=5).status_code for _ in range(20)]
    served = codes.count(200)
    assert served >= 2 and codes[served:] == [429] * (20 - served)
    r = billing.chat(key["key"], max_tokens=5)
    assert r.json()["error"]["code"] == "budget_exceeded" and int(r.headers["Retry-After"]) > 0
    assert sum(Decimal(row["cost"]) for row in billing.rows()) <= Decimal("0.00005")


def test_unknown_price_list_is_refused_at_creation(billing):
    r = billing.admin.post("/admin/keys", json={"tenant": "a", "price_list": "no-such-list"})
    assert r.status_code == 422
