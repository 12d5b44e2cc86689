"""Keys: shown once, stored hashed, disabled, rotated, expired; the open-on-loopback start."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import openai
import pytest
import sqlalchemy as sa

from manxue.server.state import STATE_KEY
from manxue.store.tables import api_keys
from tests.helpers import wait_until


def test_open_on_loopback_until_a_key_exists(billing):
    assert billing.chat(None).status_code == 200  # no keys yet: loopback is served
    key = billing.create_key(name="first")
    r = billing.chat(None)
    assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"
    assert billing.chat("sk-mx-wrong").status_code == 401
    assert billing.chat(key["key"]).status_code == 200


def test_key_shown_once_and_stored_only_as_hash(billing):
    key = billing.create_key(tenant="acme", name="prod")
    assert key["key"].startswith("sk-mx-") and key["prefix"] == key["key"][:12]
    meter = billing.gw.app[STATE_KEY].meter
    with meter.store.engine.connect() as c:
        stored = [tuple(r) for r in c.execute(sa.select(api_keys))]
    assert key["key"] not in repr(stored)
    listed = billing.admin.get("/admin/keys").json()["data"]
    assert listed[0]["prefix"] == key["prefix"] and "key" not in listed[0]
    assert key["key"] not in str(listed)


def test_openai_sdk_with_key_and_x_api_key_header(billing):
    key = billing.create_key()["key"]
    c = billing.gw.client(api_key=key)
    assert c.chat.completions.create(model="deepseek-chat",
                                     messages=[{"role": "user", "content": "x"}]).choices
    import httpx

    r = httpx.post(billing.gw.url + "/v1/chat/completions", headers={"x-api-key": key},
                   json={"model": "deepseek-chat", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 200
    with pytest.raises(openai.AuthenticationError):
        billing.gw.client(api_key="sk-mx-nope").models.list()  # a bad key is refused everywhere


def test_disable_enable_rotate(billing):
    key = billing.create_key()
    secret, kid = key["key"], key["id"]
    assert billing.admin.post(f"/admin/keys/{kid}/disable").json()["disabled"] is True
    r = billing.chat(secret)
    assert r.status_code == 401 and r.json()["error"]["code"] == "api_key_disabled"
    billing.admin.post(f"/admin/keys/{key['prefix']}/enable")
    assert billing.chat(secret).status_code == 200
    new = billing.admin.post(f"/admin/keys/{kid}/rotate").json()["key"]
    assert new != secret
    assert billing.chat(secret).status_code == 401
    assert billing.chat(new).status_code == 200


def test_disabled_elsewhere_is_seen_within_the_refresh_interval(billing):
    key = billing.create_key()
    meter = billing.gw.app[STATE_KEY].meter
    meter.store.set_disabled(key["id"])  # as `manxue keys disable` would, from another process
    # the background reload (every 0.2 s here) picks it up; the test waits for it, not a guess
    wait_until(lambda: meter.keys.by_id[key["id"]].disabled, timeout=5, what="the key reload")
    assert billing.chat(key["key"]).status_code == 401


def test_expired_key(billing):
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    key = billing.create_key(expires_at=past)
    r = billing.chat(key["key"])
    assert r.status_code == 401 and r.json()["error"]["code"] == "api_key_expired"


def test_model_allow_list(make_billing, upstream):
    from tests.helpers import deployment

    b = make_billing([deployment(upstream, "a"), deployment(upstream, "b", model="deepseek-reasoner")])
    key = b.create_key(models="deepseek-chat")["key"]
    assert b.chat(key).status_code == 200
    r = b.chat(key, model="deepseek-reasoner")
    assert r.status_code == 403 and r.json()["error"]["code"] == "model_not_allowed"
    models = b.gw.client(api_key=key).models.list()
    assert [m.id for m in models] == ["deepseek-chat"]


def test_admin_api_needs_the_admin_key(billing):
    import httpx

    assert httpx.get(billing.gw.url + "/admin/keys").status_code == 401
    assert httpx.get(billing.gw.url + "/admin/keys",
                     headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_bad_admin_input_is_4xx(billing):
    assert billing.admin.post("/admin/keys", json={"name": "x"}).status_code == 400
    assert billing.admin.post("/admin/keys", json={"tenant": "a", "rpm": "many"}).status_code == 422
    assert billing.admin.post("/admin/keys", json={"tenant": "a", "balance": "lots"}).status_code == 422
    assert billing.admin.post("/admin/keys", json={"tenant": "a", "colour": 1}).status_code == 422
    assert billing.admin.post("/admin/keys", content=b"{nope").status_code == 400
    assert billing.admin.post("/admin/keys/key_missing/topup", json={"amount": 1}).status_code == 404
    assert billing.admin.post("/admin/keys/key_x/explode").status_code in (400, 404)
    r = billing.admin.get("/admin/usage", params={"by": "planet"})
    assert r.status_code == 422
