"""Keys given odd input: zones, currencies, amounts out of range, wrong types. Each is a clear
4xx (or CLI error) that writes nothing, never a 500, a traceback or a silent rounding."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from manxue.accounting.keys import KeyStore
from manxue.accounting.ledger import insert_rows
from manxue.cli import app
from manxue.server.state import STATE_KEY
from manxue.settings import load_settings
from manxue.store.db import open_engine
from manxue.store.tables import tenants
from tests.accounting.rows import ledger_row

runner = CliRunner()
EAST8 = timezone(timedelta(hours=8))


@pytest.fixture
def cfg(tmp_path):
    path = tmp_path / "manxue.toml"
    path.write_text(f'data_dir = "{tmp_path / "data"}"\n')
    return str(path)


def cli(*args: str, code: int = 0) -> str:
    r = runner.invoke(app, list(args))
    assert r.exit_code == code, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    return r.stdout if code == 0 else r.output


# ---- times with a zone ------------------------------------------------------------------------

def test_an_expiry_with_an_offset_is_the_instant_it_names(billing):
    soon = (datetime.now(UTC) + timedelta(minutes=30)).astimezone(EAST8)
    past = (datetime.now(UTC) - timedelta(minutes=30)).astimezone(EAST8)
    live = billing.create_key(expires_at=soon.isoformat())
    dead = billing.create_key(expires_at=past.isoformat())
    assert datetime.fromisoformat(live["expires_at"]) == soon  # the same instant, shown in UTC
    assert live["expires_at"].endswith("+00:00")
    assert billing.chat(live["key"]).status_code == 200
    r = billing.chat(dead["key"])
    assert r.status_code == 401 and r.json()["error"]["code"] == "api_key_expired"
    # the same through PATCH
    kid = live["id"]
    assert billing.admin.patch(f"/admin/keys/{kid}", json={"expires_at": past.isoformat()}).status_code == 200
    assert billing.chat(live["key"]).status_code == 401


def test_usage_since_with_an_offset(cfg):
    out = json.loads(cli("keys", "create", "--tenant", "acme", "--json", "--config", cfg))
    engine = open_engine(load_settings(cfg).resolved_database_url())
    ids = (out["tenant_id"], out["id"])
    insert_rows(engine, [ledger_row("a", datetime(2026, 11, 5, 12, 0, tzinfo=UTC), *ids),
                         ledger_row("b", datetime(2026, 11, 5, 13, 0, tzinfo=UTC), *ids)])
    # 20:30 at +08:00 is 12:30 UTC: only "b" is after it, "a" only before 21:30 +08:00
    rows = json.loads(cli("usage", "--since", "2026-11-05T20:30:00+08:00", "--json", "--config", cfg))
    assert [r["request_id"] for r in rows] == ["b"]
    rows = json.loads(cli("usage", "--until", "2026-11-05T20:30:00+08:00", "--json", "--config", cfg))
    assert [r["request_id"] for r in rows] == ["a"]
    cli("usage", "--limit", "0", "--json", "--config", cfg, code=2)


# ---- currency ---------------------------------------------------------------------------------

def test_a_key_takes_the_currency_of_its_price_list(cfg):
    cny = json.loads(cli("keys", "create", "--tenant", "cn", "--balance", "10",
                         "--price-list", "deepseek-2026-08-cny", "--json", "--config", cfg))
    assert cny["currency"] == "CNY"
    out = cli("keys", "create", "--tenant", "cn", "--balance", "10", "--currency", "USD",
              "--price-list", "deepseek-2026-08-cny", "--config", cfg, code=1)
    assert "CNY" in out and "USD" in out
    assert json.loads(cli("keys", "create", "--tenant", "us", "--json", "--config", cfg))["currency"] == "USD"
    cli("keys", "create", "--tenant", "x", "--currency", "XYZW", "--config", cfg, code=1)
    # a tenant's list in another currency than a key that relies on it is refused
    usd = json.loads(cli("keys", "create", "--tenant", "us", "--json", "--config", cfg))
    out = cli("tenants", "set", "us", "--price-list", "deepseek-2026-08-cny", "--config", cfg, code=1)
    assert usd["id"] in out
    cli("keys", "set", usd["id"], "--price-list", "deepseek-2026-08-cny", "--config", cfg, code=1)


def test_a_key_in_another_currency_than_its_list_is_refused_not_charged(billing):
    r = billing.admin.post("/admin/keys", json={"tenant": "acme", "balance": "5", "currency": "EUR"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "currency_mismatch"
    # a key whose list changed under it (here: written by a store that knows no lists) is
    # refused at admission
    meter = billing.gw.app[STATE_KEY].meter
    _, secret = KeyStore(meter.store.engine).create("acme", balance=None, currency="EUR")
    meter.keys.load()
    r = billing.chat(secret)
    assert r.status_code == 403 and r.json()["error"]["code"] == "currency_mismatch"
    assert billing.rows() == []


# ---- amounts and types ------------------------------------------------------------------------

@pytest.mark.parametrize("body", [
    {"balance": "1e30"}, {"balance": "NaN"}, {"balance": "-1"}, {"balance": "0.0000000001"},
    {"name": {"a": 1}}, {"models": 5}, {"models": [1, 2]}, {"currency": "dollars"},
    {"price_list": 7}, {"daily_budget": "Infinity"}, {"expires_at": 5},
])
def test_bad_key_fields_are_422_and_write_nothing(billing, body):
    r = billing.admin.post("/admin/keys", json={"tenant": "fresh", **body})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["type"] == "invalid_request_error"
    meter = billing.gw.app[STATE_KEY].meter
    with meter.store.engine.connect() as c:
        assert c.execute(sa.select(tenants.c.id).where(tenants.c.name == "fresh")).first() is None


def test_bad_topups_and_actions(billing):
    kid = billing.create_key(balance="1")["id"]
    for amount in ("1e30", "NaN", "Infinity", "0", "-5", "0.0000000001", "999999999.5"):
        r = billing.admin.post(f"/admin/keys/{kid}/topup", json={"amount": amount})
        assert r.status_code == 422, (amount, r.text)
    r = billing.admin.post(f"/admin/keys/{kid}/topup", json={"amount": "1", "note": {"x": 1}})
    assert r.status_code == 422
    r = billing.admin.post(f"/admin/keys/{kid}/explode")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert billing.admin.get("/admin/keys?tenant=acme").json()["data"][0]["balance"] == "1"


@pytest.mark.parametrize("args", [
    ("keys", "create", "--tenant", "a", "--balance", "NaN"),
    ("keys", "create", "--tenant", "a", "--balance", "Infinity"),
    ("keys", "create", "--tenant", "a", "--balance", "1e30"),
    ("keys", "create", "--tenant", "a", "--daily-budget", "-Infinity"),
    ("keys", "create", "--tenant", "", "--balance", "1"),
])
def test_cli_bad_amounts_are_clear_errors(cfg, args):
    out = cli(*args, "--config", cfg, code=1)
    assert "error" in out and "Traceback" not in out


def test_cli_bad_topup_is_a_clear_error(cfg):
    created = cli("keys", "create", "--tenant", "a", "--balance", "1", "--json", "--config", cfg)
    kid = json.loads(created)["id"]
    for amount in ("NaN", "Infinity", "1e30"):
        out = cli("keys", "topup", kid, amount, "--config", cfg, code=1)
        assert "amount" in out
    assert json.loads(cli("keys", "list", "--json", "--config", cfg))[0]["balance"] == "1"


# ---- the invoice as JSON, and for an unknown tenant ----------------------------------------

def test_invoice_json_and_unknown_tenant(billing, cfg):
    key = billing.create_key(tenant="inv")["key"]
    assert billing.chat(key).status_code == 200
    billing.flush()
    month = datetime.now(UTC).strftime("%Y-%m")
    inv = billing.admin.get("/admin/invoice", params={"tenant": "inv", "month": month,
                                                      "format": "json"}).json()
    assert inv["tenant"] == "inv" and len(inv["lines"]) == 1
    line = inv["lines"][0]
    assert line["requests"] == 1 and line["currency"] == "USD"
    assert inv["totals"] == [{"currency": "USD", "amount": line["amount"]}]
    r = billing.admin.get("/admin/invoice", params={"tenant": "nobody", "month": month})
    assert r.status_code == 404 and r.json()["error"]["code"] == "tenant_not_found"
    cli("invoice", "--tenant", "nobody", "--month", month, "--config", cfg, code=1)
    cli("keys", "create", "--tenant", "t", "--config", cfg)
    empty = json.loads(cli("invoice", "--tenant", "t", "--month", month, "--json", "--config", cfg))
    assert empty == {"tenant": "t", "month": month, "lines": [], "totals": []}


def test_a_model_card_needs_a_key_once_keys_exist(billing):
    import httpx

    url = billing.gw.url + "/v1/models/deepseek-chat"
    assert httpx.get(url).status_code == 200  # open mode, on loopback
    key = billing.create_key(models=["deepseek-reasoner"])["key"]
    assert httpx.get(url).status_code == 401
    auth = {"Authorization": f"Bearer {key}"}
    assert httpx.get(url, headers=auth).status_code == 404  # not on this key's allow-list
    other = billing.create_key()["key"]
    card = httpx.get(url, headers={"Authorization": f"Bearer {other}"})
    assert card.status_code == 200 and card.json()["id"] == "deepseek-chat"


def test_keys_for_one_new_tenant_created_at_once(cfg):
    from concurrent.futures import ThreadPoolExecutor
    from decimal import Decimal

    store = KeyStore(open_engine(load_settings(cfg).resolved_database_url()))
    with ThreadPoolExecutor(8) as pool:
        made = list(pool.map(lambda _: store.create("rush", balance=Decimal(1))[0], range(8)))
    assert len({r.id for r in made}) == 8 and len({r.tenant_id for r in made}) == 1


def test_clearing_a_price_list_is_checked_like_setting_one(billing):
    cny = "deepseek-2026-08-cny"  # the gateway's default list is in USD
    key = billing.create_key(tenant="cn", price_list=cny)
    assert key["currency"] == "CNY"
    r = billing.admin.patch(f"/admin/keys/{key['id']}", json={"price_list": None})
    assert r.status_code == 422 and r.json()["error"]["code"] == "currency_mismatch"
    r = billing.admin.patch("/admin/tenants/cn2", json={"price_list": cny})
    assert r.status_code in (404, 422)  # no such tenant yet
    k2 = billing.create_key(tenant="cn2", currency="CNY", price_list=cny)
    assert billing.admin.patch(f"/admin/keys/{k2['id']}", json={"price_list": None}).status_code == 422
    assert billing.admin.patch("/admin/tenants/cn2", json={"price_list": cny}).status_code == 200
    assert billing.admin.patch(f"/admin/keys/{k2['id']}", json={"price_list": None}).status_code == 200
    r = billing.admin.patch("/admin/tenants/cn2", json={"price_list": None})  # back to the USD default
    assert r.status_code == 422 and k2["id"] in r.json()["error"]["message"]


def test_a_key_without_credits_can_change_currency(billing):
    post = billing.create_key(tenant="mover")
    r = billing.admin.patch(f"/admin/keys/{post['id']}", json={"currency": "CNY"})
    assert r.status_code == 422  # the USD default list would price it
    r = billing.admin.patch(f"/admin/keys/{post['id']}",
                            json={"currency": "cny", "price_list": "deepseek-2026-08-cny"})
    assert r.status_code == 200 and r.json()["currency"] == "CNY"
    pre = billing.create_key(tenant="mover", balance="1")
    r = billing.admin.patch(f"/admin/keys/{pre['id']}",
                            json={"currency": "CNY", "price_list": "deepseek-2026-08-cny"})
    assert r.status_code == 422 and "credits" in r.json()["error"]["message"]
    assert billing.admin.patch(f"/admin/keys/{pre['id']}", json={"currency": None}).status_code == 422


def test_keys_billed_in_another_currency_are_named_at_start(make_billing, tmp_path, caplog):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old, _ = KeyStore(open_engine(url)).create("legacy", currency="EUR")  # made before the check
    with caplog.at_level(logging.WARNING):
        make_billing(database_url=url)
    [line] = [r.getMessage() for r in caplog.records if "currency_mismatch" in r.getMessage()]
    assert old.id in line and "EUR" in line and "--price-list" in line


def test_the_store_itself_keeps_times_in_utc(cfg):
    store = KeyStore(open_engine(load_settings(cfg).resolved_database_url()))
    rec, _ = store.create("z", expires_at=datetime(2027, 1, 1, 8, 0, tzinfo=EAST8))
    assert rec.expires_at == datetime(2027, 1, 1, 0, 0, tzinfo=UTC)
    rec = store.update(rec.id, {"expires_at": datetime(2027, 2, 1, 8, 0, tzinfo=EAST8)})
    assert rec.expires_at == datetime(2027, 2, 1, 0, 0, tzinfo=UTC)


def test_a_price_list_needs_a_currency_code():
    from manxue.errors import InvalidParameters
    from manxue.pricing.lists import PriceList

    with pytest.raises(InvalidParameters, match="three-letter"):
        PriceList("euro-list", "EURO", ())
