"""Text completions and embeddings on the one usage path: counted when the upstream reports
no usage, reserved by what they can cost (embeddings generate nothing)."""

from __future__ import annotations

from decimal import Decimal

import httpx

from manxue.testing.deepseek_emulator import Behavior


def test_missing_usage_is_counted_from_the_prompt_and_the_text(billing, upstream):
    key = billing.create_key()["key"]
    upstream.emu.push(Behavior(usage=False))
    r = httpx.post(billing.gw.url + "/v1/completions", timeout=20,
                   headers={"Authorization": f"Bearer {key}"},
                   json={"model": "deepseek-chat", "prompt": "hello there world", "max_tokens": 9})
    assert r.status_code == 200, r.text
    [row] = billing.rows()
    assert row["usage_source"] == "counted"
    assert row["prompt_tokens"] >= 3 and row["completion_tokens"] >= 5


def test_an_embedding_reserves_only_its_input(billing, upstream):
    """A balance too small for a chat answer's reservation still pays for embeddings."""
    key = billing.create_key(balance="0.0001")["key"]
    auth = {"Authorization": f"Bearer {key}"}
    chat = httpx.post(billing.gw.url + "/v1/chat/completions", headers=auth, timeout=20,
                      json={"model": "deepseek-chat", "messages": [{"role": "user", "content": "x"}]})
    assert chat.status_code == 402
    r = httpx.post(billing.gw.url + "/v1/embeddings", headers=auth, timeout=20,
                   json={"model": "deepseek-chat", "input": "one two three"})
    assert r.status_code == 200, r.text
    [row] = [x for x in billing.rows() if x["status"] == "ok"]
    assert (row["prompt_tokens"], row["completion_tokens"]) == (3, 0)
    assert Decimal(row["cost"]) > 0
