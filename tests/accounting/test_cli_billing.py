"""The CLI contract operators' scripts rely on: `manxue keys|usage|invoice` with --json."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from manxue.accounting.ledger import insert_rows
from manxue.cli import app
from manxue.settings import load_settings
from manxue.store.db import open_engine
from tests.accounting.rows import ledger_row

runner = CliRunner()


@pytest.fixture
def cfg(tmp_path):
    path = tmp_path / "manxue.toml"
    path.write_text(f'data_dir = "{tmp_path / "data"}"\n')
    return str(path)


def run(*args: str) -> str:
    r = runner.invoke(app, list(args))
    assert r.exit_code == 0, r.output
    return r.stdout


def wide(*args: str) -> str:
    """A table as a 200-column terminal shows it (one line per row)."""
    r = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    return r.stdout


def test_keys_create_json_contract(cfg):
    out = json.loads(run("keys", "create", "--tenant", "acme", "--balance", "10", "--currency", "USD",
                         "--models", "a,b", "--rpm", "5", "--tpm", "1000", "--max-concurrency", "2",
                         "--privacy", "local", "--json", "--config", cfg))
    assert out["key"].startswith("sk-mx-") and out["id"].startswith("key_")
    assert out["tenant"] == "acme" and out["balance"] == "10" and out["currency"] == "USD"
    assert out["models"] == ["a", "b"] and out["rpm"] == 5 and out["tpm"] == 1000
    assert out["max_concurrency"] == 2 and out["privacy"] == "local"
    listed = json.loads(run("keys", "list", "--json", "--config", cfg))
    assert listed[0]["id"] == out["id"] and "key" not in listed[0]
    topped = json.loads(run("keys", "topup", out["id"], "2.5", "--json", "--config", cfg))
    assert topped["balance"] == "12.5"
    assert json.loads(run("keys", "disable", out["prefix"], "--json", "--config", cfg))["disabled"]
    rotated = json.loads(run("keys", "rotate", out["id"], "--json", "--config", cfg))
    assert rotated["key"] != out["key"]


def test_usage_json_and_filters(cfg):
    out = json.loads(run("keys", "create", "--tenant", "acme", "--json", "--config", cfg))
    engine = open_engine(load_settings(cfg).resolved_database_url())
    ids = (out["tenant_id"], out["id"])
    insert_rows(engine, [ledger_row("old", datetime(2026, 10, 5, tzinfo=UTC), *ids),
                         ledger_row("new", datetime(2026, 11, 5, tzinfo=UTC), *ids)])
    rows = json.loads(run("usage", "--tenant", "acme", "--since", "2026-11-01", "--json", "--config", cfg))
    assert [r["request_id"] for r in rows] == ["new"]
    assert rows[0]["cost"] == "0.000025" and rows[0]["cache_hit_tokens"] == 4
    [total] = json.loads(run("usage", "--by", "model", "--json", "--config", cfg))
    assert total["requests"] == 2 and total["cache_hit_rate"] == 0.4 and total["margin"] == "0.00004"
    csv_text = run("invoice", "--tenant", "acme", "--month", "2026-11", "--config", cfg)
    assert "TOTAL" in csv_text and "0.000025" in csv_text


def test_cli_errors_are_clear(cfg):
    r = runner.invoke(app, ["keys", "topup", "key_nope", "5", "--config", cfg])
    assert r.exit_code == 1 and "no API key" in r.output
    r = runner.invoke(app, ["keys", "create", "--tenant", "a", "--balance", "lots", "--config", cfg])
    assert r.exit_code == 2 and "must be a number" in r.output
    r = runner.invoke(app, ["usage", "--since", "yesterday-ish", "--config", cfg])
    assert r.exit_code == 2 and "ISO 8601" in r.output


def test_usage_limit_is_the_newest_rows(cfg):
    out = json.loads(run("keys", "create", "--tenant", "acme", "--json", "--config", cfg))
    engine = open_engine(load_settings(cfg).resolved_database_url())
    ids = (out["tenant_id"], out["id"])
    insert_rows(engine, [ledger_row(f"r{day}", datetime(2026, 11, day, tzinfo=UTC), *ids)
                         for day in (3, 1, 5, 2, 4)])
    rows = json.loads(run("usage", "--limit", "2", "--json", "--config", cfg))
    assert [r["request_id"] for r in rows] == ["r4", "r5"]  # the newest two, oldest first
    rows = json.loads(run("usage", "--limit", "2", "--until", "2026-11-04", "--json", "--config", cfg))
    assert [r["request_id"] for r in rows] == ["r2", "r3"]
    assert [r["request_id"] for r in json.loads(run("usage", "--json", "--config", cfg))] == [
        "r1", "r2", "r3", "r4", "r5"]
    table = wide("usage", "--limit", "1", "--config", cfg)
    assert "2026-11-05 00:00:00" in table and "2026-11-04" not in table


def test_tables_print_a_dash_for_nothing(cfg):
    out = json.loads(run("keys", "create", "--tenant", "acme", "--json", "--config", cfg))
    engine = open_engine(load_settings(cfg).resolved_database_url())
    # billing off or an unknown key: no tenant, no key; a request that reached no deployment
    insert_rows(engine, [ledger_row("anon", datetime(2026, 11, 5, tzinfo=UTC), None, None,
                                    deployment=None, currency=None, status="error")])
    [row] = [line for line in wide("usage", "--config", cfg).splitlines() if "error" in line]
    assert "None" not in row and row.split()[2:4] == ["—", "m"]  # tenant, then model
    assert "None" not in wide("usage", "--by", "deployment", "--config", cfg)
    listed = wide("keys", "list", "--config", cfg)
    assert out["rpm"] is None and "None" not in listed and "—" in listed  # no limits
