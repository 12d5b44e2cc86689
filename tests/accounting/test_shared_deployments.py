"""Deployments added while serving are shared through the database: a deployment added on one
gateway is served by another using the same PostgreSQL (as workers and replicas do) within the
refresh interval, a restarted gateway serves it from the start, and a removal reaches all."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from tests.accounting.conftest import ADMIN
from tests.helpers import Gateway, Upstream, deployment, wait_until

AUTH = {"Authorization": f"Bearer {ADMIN}"}


def _models(gw: Gateway) -> list[str]:
    return [m["id"] for m in httpx.get(gw.url + "/v1/models", timeout=5).json()["data"]]


def test_a_deployment_added_on_one_replica_is_served_by_all(
        make_billing: Callable[..., Any], postgres_url: str, upstreams: list[Upstream]) -> None:
    a = make_billing(database_url=postgres_url).gw
    b = make_billing(database_url=postgres_url).gw
    extra = deployment(upstreams[1], "extra", model="extra-model")
    r = httpx.post(a.url + "/admin/deployments", json=extra, headers=AUTH, timeout=10)
    assert r.status_code == 201, r.text
    assert "extra-model" in _models(a)  # at once where it was added
    wait_until(lambda: "extra-model" in _models(b), what="the other replica serves it")
    answer = httpx.post(b.url + "/v1/chat/completions", timeout=10, json={
        "model": "extra-model", "messages": [{"role": "user", "content": "hi"}]})
    assert answer.status_code == 200, answer.text
    assert upstreams[1].emu.received, "the request reached the added deployment's upstream"
    again = httpx.post(b.url + "/admin/deployments", json=extra, headers=AUTH, timeout=10)
    assert again.status_code == 409  # taken on every replica

    c = make_billing(database_url=postgres_url).gw  # a replica started afterwards
    assert "extra-model" in _models(c)

    gone = httpx.delete(b.url + "/admin/deployments/extra", headers=AUTH, timeout=10)
    assert gone.status_code == 200, gone.text
    for gw in (a, c):
        wait_until(lambda gw=gw: "extra-model" not in _models(gw), what="removed everywhere")
    assert httpx.delete(a.url + "/admin/deployments/extra", headers=AUTH,
                        timeout=10).status_code == 404
