"""A tenant's own price list: used by its keys that name none, a key's own list still wins,
changed from the admin API or the CLI (another process) and seen by a running gateway."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from manxue.cli import app
from manxue.server.state import STATE_KEY
from tests.accounting.conftest import PRICES_TOML


def lists_used(bill: Any, *keys: str) -> list[str]:
    for k in keys:
        assert bill.chat(k).status_code == 200
    return [r["price_list"] for r in bill.rows()[-len(keys):]]


def test_a_tenant_list_applies_to_its_keys_without_one(billing: Any) -> None:
    plain = billing.create_key(tenant="acme")["key"]
    own = billing.create_key(tenant="acme", price_list="resale-usd")["key"]
    other = billing.create_key(tenant="beta")["key"]
    r = billing.admin.patch("/admin/tenants/acme", json={"price_list": "resale-plus-20"})
    assert r.status_code == 200 and r.json()["price_list"] == "resale-plus-20"
    assert r.json()["keys"] == 2
    assert lists_used(billing, plain, own, other) == ["resale-plus-20", "resale-usd", "resale-usd"]
    listed = {t["name"]: t for t in billing.admin.get("/admin/tenants").json()["data"]}
    assert listed["acme"]["price_list"] == "resale-plus-20" and listed["beta"]["price_list"] is None

    assert billing.admin.patch("/admin/tenants/acme", json={"price_list": None}).status_code == 200
    assert lists_used(billing, plain) == ["resale-usd"]  # back to [billing] default_price_list


def test_a_change_from_another_process_is_seen_at_the_next_refresh(billing: Any) -> None:
    key = billing.create_key(tenant="acme")["key"]
    assert lists_used(billing, key) == ["resale-usd"]
    meter = billing.gw.app[STATE_KEY].meter
    meter.store.set_tenant_price_list("acme", "resale-plus-20")  # as `manxue tenants set` does
    deadline = time.monotonic() + 10
    while next(iter(meter.keys.by_id.values())).tenant_price_list != "resale-plus-20":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert lists_used(billing, key) == ["resale-plus-20"]


def test_bad_tenant_changes_are_4xx(billing: Any) -> None:
    billing.create_key(tenant="acme")
    r = billing.admin.patch("/admin/tenants/acme", json={"price_list": "no-such-list"})
    assert r.status_code == 422 and "manxue prices" in r.json()["error"]["message"]
    r = billing.admin.patch("/admin/tenants/acme", json={"currency": "EUR"})
    assert r.status_code == 422
    r = billing.admin.patch("/admin/tenants/nobody", json={"price_list": "resale-usd"})
    assert 400 <= r.status_code < 500 and "no tenant named" in r.json()["error"]["message"]


def test_the_cli_sets_and_lists_tenant_lists(tmp_path: Path) -> None:
    (tmp_path / "prices.toml").write_text(PRICES_TOML)
    cfg = tmp_path / "manxue.toml"
    cfg.write_text(f'data_dir = "{tmp_path / "data"}"\n[billing]\n'
                   f'price_lists = ["{tmp_path / "prices.toml"}"]\n')
    runner = CliRunner()

    def run(*args: str) -> Any:
        r = runner.invoke(app, [*args, "--config", str(cfg)])
        assert r.exit_code == 0, r.output
        return r.stdout

    run("keys", "create", "--tenant", "acme", "--json")
    got = json.loads(run("tenants", "set", "acme", "--price-list", "resale-plus-20", "--json"))
    assert got["name"] == "acme" and got["price_list"] == "resale-plus-20" and got["keys"] == 1
    [t] = json.loads(run("tenants", "list", "--json"))
    assert t["price_list"] == "resale-plus-20"
    [k] = json.loads(run("keys", "list", "--json"))
    assert k["tenant_price_list"] == "resale-plus-20" and k["price_list"] is None
    assert "resale-plus-20" in run("tenants", "list")
    got = json.loads(run("tenants", "set", "acme", "--clear-price-list", "--json"))
    assert got["price_list"] is None

    for args, code, said in ((["acme", "--price-list", "nope"], 2, "unknown price list"),
                             (["acme"], 2, "give --price-list ID or --clear-price-list"),
                             (["nobody", "--price-list", "resale-usd"], 1, "no tenant named")):
        r = runner.invoke(app, ["tenants", "set", *args, "--config", str(cfg)])
        assert r.exit_code == code and said in " ".join(r.output.split()), r.output
