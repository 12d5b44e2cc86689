"""Two gateway processes share one set of limits and balances through the machine's Redis."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from decimal import Decimal

import httpx
import orjson
import pytest
import redis

from manxue.accounting.money import cost_nano, from_nano
from manxue.testing.deepseek_emulator import Behavior
from tests.accounting.servers import cli, free_port, start_server, write_config
from tests.helpers import wait_until


@pytest.fixture
def two_gateways(tmp_path, upstream, redis_url):
    ns = f"test-{uuid.uuid4().hex[:8]}"
    cfg = write_config(tmp_path / "manxue.toml", upstream.url, data_dir=tmp_path / "data",
                       extra=f'redis_url = "{redis_url}"')
    env = {"MANXUE_REDIS_NAMESPACE": ns}
    ports = [free_port(), free_port()]
    procs = [start_server(cfg, p, env=env, log=tmp_path / f"gw{i}.log") for i, p in enumerate(ports)]
    yield cfg, [f"http://127.0.0.1:{p}/v1/chat/completions" for p in ports]
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait(15)
    r = redis.Redis.from_url(redis_url)
    for k in r.scan_iter(f"{ns}:*"):
        r.delete(k)


def _key(cfg, *args: str) -> str:
    return json.loads(cli("keys", "create", "--tenant", "acme", "--json", "--config", str(cfg),
                          *args).stdout)["key"]


def _wait_for_keys(urls: list[str], *keys: str) -> None:
    """Until both processes have reloaded `keys` (created by the CLI, in SQL). GET /v1/models
    authenticates without being admitted, so it counts against no limit: a key is loaded once
    it is accepted there while a made-up key is refused (else the process is still in open
    mode, which lets every loopback caller through)."""
    def loaded(url: str, key: str) -> bool:
        models = url.removesuffix("/chat/completions") + "/models"
        return (httpx.get(models, headers={"Authorization": f"Bearer {key}"}).status_code == 200
                and httpx.get(models, headers={"Authorization": "Bearer sk-mx-nobody"}).status_code
                == 401)

    wait_until(lambda: all(loaded(u, k) for u in urls for k in keys), what="the key reload")


def test_one_rpm_limit_across_two_processes(two_gateways):
    cfg, urls = two_gateways
    key = _key(cfg, "--rpm", "10")
    _wait_for_keys(urls, key)
    codes = []
    for i in range(20):
        r = httpx.post(urls[i % 2], headers={"Authorization": f"Bearer {key}"},
                       json={"model": "deepseek-chat", "messages": [{"role": "user", "content": "x"}]})
        codes.append(r.status_code)
    assert codes.count(200) == 10 and codes.count(429) == 10
    assert 200 in codes[1::2] and 200 in codes[0::2]  # both processes served


def test_one_balance_across_two_processes(two_gateways, upstream):
    cfg, urls = two_gateways
    messages = [{"role": "user", "content": "hello there"}]
    body = orjson.dumps({"model": "deepseek-chat", "messages": messages, "max_tokens": 10})
    reserve = cost_nano(0, len(body), 10, Decimal("0.07"), Decimal("0.27"), Decimal("1.10"))
    key = _key(cfg, "--balance", str(from_nano(reserve * 6)))
    upstream.emu.default = Behavior(first_byte_delay=1.0)
    _wait_for_keys(urls, key)

    async def burst() -> list[int]:
        async with httpx.AsyncClient(timeout=30) as c:
            rs = await asyncio.gather(*[
                c.post(urls[i % 2], content=body,
                       headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
                for i in range(40)])
        return [r.status_code for r in rs]

    codes = asyncio.run(burst())
    assert codes.count(200) == 6 and codes.count(402) == 34


def _post(url: str, key: str, **body: object) -> httpx.Response:
    return httpx.post(url, headers={"Authorization": f"Bearer {key}"}, timeout=30, json={
        "model": "deepseek-chat", "messages": [{"role": "user", "content": "hello there"}], **body})


def test_one_concurrency_limit_across_two_processes(two_gateways, upstream):
    cfg, urls = two_gateways
    key = _key(cfg, "--max-concurrency", "3")
    upstream.emu.default = Behavior(first_byte_delay=1.0)
    _wait_for_keys(urls, key)

    async def burst() -> list[int]:
        async with httpx.AsyncClient(timeout=30) as c:
            rs = await asyncio.gather(*[c.post(
                urls[i % 2], headers={"Authorization": f"Bearer {key}"},
                json={"model": "deepseek-chat", "messages": [{"role": "user", "content": "x"}]})
                for i in range(10)])
        return [r.status_code for r in rs]

    codes = asyncio.run(burst())
    assert codes.count(200) == 3 and codes.count(429) == 7
    # the slots came back: the next requests are served again, on either process
    upstream.emu.default = Behavior()
    assert [_post(u, key).status_code for u in urls] == [200, 200]


def test_one_tpm_limit_and_one_budget_across_two_processes(two_gateways):
    cfg, urls = two_gateways
    tkey = _key(cfg, "--tpm", "12")
    budgeted = json.loads(cli("keys", "create", "--tenant", "acme", "--daily-budget", "0.00005",
                              "--json", "--config", str(cfg)).stdout)
    bkey = budgeted["key"]
    _wait_for_keys(urls, tkey, bkey)
    # each answer uses 10 tokens: the first takes 10 of 12, the second is admitted on the 2
    # left (the bucket goes below zero), the third is refused, whichever process it reaches
    assert [_post(urls[i % 2], tkey).status_code for i in range(3)] == [200, 200, 429]
    codes = [_post(urls[i % 2], bkey, max_tokens=5).status_code for i in range(20)]
    served = codes.count(200)
    assert served >= 2 and codes[served:] == [429] * (20 - served)
    spent: list[Decimal] = []

    def flushed() -> bool:  # both processes flush their ledger rows in the background
        rows = json.loads(cli("usage", "--json", "--config", str(cfg)).stdout)
        spent[:] = [Decimal(r["cost"]) for r in rows if r["key_id"] == budgeted["id"]]
        return len(spent) >= served

    wait_until(flushed, timeout=20, interval=0.2, what="the ledger flush")
    assert len(spent) == served and sum(spent) <= Decimal("0.00005")
