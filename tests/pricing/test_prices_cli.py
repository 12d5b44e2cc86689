"""`manxue prices`: the lists billing can use, shipped and the operator's own, and what a list
charges at a given time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from manxue.cli import app

runner = CliRunner()

OWN = """
[[list]]
source = "Reseller sheet, autumn 2026"
currency = "USD"
id = "reseller-v4"

[[list.entry]]
effective_from = 2026-09-01T00:00:00+08:00
model = "deepseek-v4-pro"
output = 2.40
miss = 0.80
hit = 0.05

[[list.entry.window]]
name = "peak"
timezone = "Asia/Shanghai"
start = 09:00:00
end = 12:00:00
weekdays = ["mon", "tue", "wed", "thu", "fri"]
multiplier = 2
"""


@pytest.fixture
def cfg(tmp_path: Path) -> str:
    (tmp_path / "reseller.toml").write_text(OWN)
    path = tmp_path / "manxue.toml"
    path.write_text(f'data_dir = "{tmp_path / "data"}"\n[billing]\n'
                    f'price_lists = ["{tmp_path / "reseller.toml"}"]\n')
    return str(path)


def run(*args: str) -> str:
    r = runner.invoke(app, ["prices", *args])
    assert r.exit_code == 0, r.output
    return r.stdout


def test_lists_shipped_and_own_lists_with_what_they_price_then(cfg: str) -> None:
    rows = {r["id"]: r for r in json.loads(run("--config", cfg, "--at", "2025-03-01T00:00:00Z",
                                                "--json"))}
    assert {"deepseek-v3-2025-02", "deepseek-history", "openai-2025-03", "reseller-v4"} <= set(rows)
    assert rows["deepseek-v3-2025-02"]["in_force"] == ["deepseek-chat"]
    assert rows["reseller-v4"]["in_force"] == []  # not yet in force in March 2025
    assert rows["reseller-v4"]["source"] == "Reseller sheet, autumn 2026"
    later = {r["id"]: r for r in json.loads(run("-c", cfg, "--at", "2026-10-01", "--json"))}
    assert later["reseller-v4"]["in_force"] == ["deepseek-v4-pro"]
    assert later["deepseek-v3-2025-02"]["in_force"] == []
    only = json.loads(run("-c", cfg, "--model", "gpt-4o", "--json"))
    assert [r["id"] for r in only] == ["openai-2025-03"]


def test_one_list_shows_entries_and_the_price_in_force_with_its_window(cfg: str) -> None:
    # 10:00 in Shanghai on a Wednesday: inside the peak window (× 2)
    got = json.loads(run("reseller-v4", "-c", cfg, "--at", "2026-09-30T10:00:00+08:00", "--json"))
    assert got["currency"] == "USD" and got["at"] == "2026-09-30T02:00:00+00:00"
    (entry,) = got["entries"]
    assert entry["base"] == {"hit": "0.05", "miss": "0.80", "output": "2.40", "currency": "USD"}
    assert entry["in_force"] and entry["now"]["window"] == "peak"
    assert (entry["now"]["hit"], entry["now"]["miss"], entry["now"]["output"]) == ("0.10", "1.60", "4.80")
    # a holiday-free Thursday evening: the base price
    got = json.loads(run("reseller-v4", "-c", cfg, "--at", "2026-10-01T20:00:00+08:00", "--json"))
    assert got["entries"][0]["now"]["window"] is None
    assert got["entries"][0]["now"]["output"] == "2.40"


def test_history_has_one_entry_per_period_and_only_one_in_force() -> None:
    got = json.loads(run("deepseek-history", "--model", "deepseek-chat", "--at",
                         "2025-03-01T17:00:00Z", "--json"))
    entries = got["entries"]
    assert len(entries) >= 4 and {e["model"] for e in entries} == {"deepseek-chat"}
    (now,) = [e for e in entries if e["in_force"]]
    assert now["now"]["window"] == "off-peak" and now["now"]["output"] == "0.550"


def test_tables_read_like_a_price_sheet(cfg: str) -> None:
    out = run("-c", cfg)
    assert "reseller-v4" in out and "deepseek-v4-pro" in out and "manxue prices LIST" in out
    out = run("reseller-v4", "-c", cfg, "--at", "2026-09-30T10:00:00+08:00")
    assert "USD per 1M tokens" in out and "peak" in out and "0.10 / 1.60 / 4.80" in out


@pytest.mark.parametrize(("args", "message"), [
    (["nope"], "unknown price list 'nope'; known:"),
    (["openai-2025-03", "--model", "deepseek-chat"], "has no prices for model 'deepseek-chat'"),
    (["--at", "yesterday"], "--at must be an ISO 8601 time"),
])
def test_bad_input_says_what_to_do(args: list[str], message: str) -> None:
    r = runner.invoke(app, ["prices", *args])
    assert r.exit_code == 2
    assert message in " ".join(r.output.split())


def test_a_broken_price_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text('[[list]]\nid = "x"\ncurrency = "USD"\nbogus = 1\n')
    cfg = tmp_path / "manxue.toml"
    cfg.write_text(f'[billing]\nprice_lists = ["{tmp_path / "bad.toml"}"]\n')
    r = runner.invoke(app, ["prices", "-c", str(cfg)])
    assert r.exit_code == 2 and "bad.toml" in r.output
