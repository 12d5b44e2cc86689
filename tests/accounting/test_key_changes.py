"""Changing a key after creation: limits, models, budgets, price list and expiry, from the
admin API and the CLI, enforced by a running gateway; bad changes are 4xx and change nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from manxue.cli import app


def test_a_running_gateway_enforces_changed_settings(billing: Any) -> None:
    key = billing.create_key(tenant="acme")
    ref, secret = key["id"], key["key"]
    assert billing.chat(secret).status_code == 200

    r = billing.admin.patch(f"/admin/keys/{ref}", json={"models": ["deepseek-reasoner"]})
    assert r.status_code == 200 and r.json()["models"] == ["deepseek-reasoner"]
    assert billing.chat(secret).json()["error"]["code"] == "model_not_allowed"

    r = billing.admin.patch(f"/admin/keys/{ref}", json={"models": None, "rpm": 1,
                                                         "price_list": "resale-plus-20"})
    assert r.status_code == 200 and r.json()["rpm"] == 1 and r.json()["models"] is None
    assert billing.chat(secret).status_code == 200
    assert billing.chat(secret).status_code == 429  # one request per minute now
    assert billing.rows()[-1]["price_list"] == "resale-plus-20"

    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    r = billing.admin.patch(f"/admin/keys/{ref}", json={"rpm": None, "expires_at": past})
    assert r.status_code == 200 and r.json()["expires_at"] is not None
    assert billing.chat(secret).json()["error"]["code"] == "api_key_expired"
    assert billing.admin.patch(f"/admin/keys/{ref}", json={"expires_at": None}).status_code == 200
    assert billing.chat(secret).status_code == 200


@pytest.mark.parametrize("body", [
    {"rpm": 0}, {"rpm": "many"}, {"tpm": 1.5}, {"privacy": "cloudy"}, {"daily_budget": "-1"},
    {"monthly_budget": "NaN"}, {"expires_at": 12}, {"expires_at": "soon"}, {"price_list": "nope"},
    {"models": "a,b", "currency": "EUR"}, {"models": [1]}, {},
])
def test_bad_changes_are_4xx_and_change_nothing(billing: Any, body: dict[str, Any]) -> None:
    key = billing.create_key(tenant="acme", rpm=5)
    r = billing.admin.patch(f"/admin/keys/{key['id']}", json=body)
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["error"]["message"]
    [k] = billing.admin.get("/admin/keys").json()["data"]
    assert k["rpm"] == 5 and k["models"] is None and k["expires_at"] is None


def test_the_cli_sets_and_unsets(tmp_path: Path) -> None:
    cfg = tmp_path / "manxue.toml"
    cfg.write_text(f'data_dir = "{tmp_path / "data"}"\n')
    runner = CliRunner()

    def run(*args: str) -> Any:
        r = runner.invoke(app, [*args, "--config", str(cfg)])
        assert r.exit_code == 0, r.output
        return json.loads(r.stdout)

    key = run("keys", "create", "--tenant", "acme", "--rpm", "10", "--json")
    got = run("keys", "set", key["id"], "--tpm", "1000", "--models", "a, b", "--daily-budget", "2.5",
              "--expires", "2027-01-01", "--json")
    assert got["tpm"] == 1000 and got["models"] == ["a", "b"] and got["daily_budget"] == "2.5"
    assert got["expires_at"] == "2027-01-01T00:00:00+00:00" and got["rpm"] == 10
    got = run("keys", "set", key["prefix"], "--unset", "rpm", "--unset", "expires", "--unset",
              "models", "--json")
    assert got["rpm"] is None and got["expires_at"] is None and got["models"] is None

    for args, code, said in ((["--rpm", "0"], 1, "at least 1"),
                             ([], 2, "nothing to change"),
                             (["--rpm", "3", "--unset", "rpm"], 2, "both set and unset"),
                             (["--unset", "balance"], 1, "cannot change balance"),
                             (["--price-list", "nope"], 2, "unknown price list")):
        r = runner.invoke(app, ["keys", "set", key["id"], *args, "--config", str(cfg)])
        assert r.exit_code == code and said in " ".join(r.output.split()), (args, r.output)
