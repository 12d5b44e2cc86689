"""`manxue verify` as mounted by the main CLI: `app.command("verify")(verify)`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import typer
from typer.testing import CliRunner

from manxue.verify.cli import verify
from tests.verify.conftest import Bench

app = typer.Typer()
app.command("verify")(verify)
app.command("noop")(lambda: None)  # a second command keeps `verify` a subcommand, as in manxue


def test_json_and_report_against_a_distill_standin(bench: Bench, tmp_path: Path) -> None:
    report = tmp_path / "audit.html"
    res = CliRunner().invoke(app, [
        "verify", "--base-url", bench.standins["qwen2.5"].url, "--model", "deepseek-reasoner",
        "--claim", "deepseek-r1", "--checks", "tokenizer,protocol", "--seed", "9", "--json",
        "--report", str(report)])
    assert res.exit_code == 1, res.output  # substituted
    result = json.loads(res.stdout)
    assert result["verdict"] == "substituted" and result["settings"]["seed"] == 9
    assert next(iter(result["posterior"])).startswith("r1-distill-qwen")
    html = report.read_text()
    assert "substituted" in html and not re.search(r"(src|href)=['\"]https?://", html)


def test_table_output_and_inconclusive_exit_code(bench: Bench) -> None:
    res = CliRunner().invoke(app, [
        "verify", "--base-url", bench.standins["deepseek"].url, "--model", "deepseek-reasoner",
        "--claim", "deepseek-r1", "--checks", "tokenizer", "--seed", "3"])
    assert res.exit_code == 3, res.output  # deepseek family, but R1 vs V3 undecided
    assert res.stdout.startswith("inconclusive") and "spent 3 requests" in res.stdout


def test_bad_options_exit_2(bench: Bench) -> None:
    res = CliRunner().invoke(app, ["verify", "--base-url", "ftp://x", "--model", "m"])
    assert res.exit_code == 2
