"""`manxue plan` through typer's CliRunner: --json output and readable tables."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from manxue.plan.cli import plan_app

runner = CliRunner()


def run(*args: str) -> str:
    res = runner.invoke(plan_app, list(args))
    assert res.exit_code == 0, res.output
    return res.stdout


def test_plan_json_has_the_contract_keys() -> None:
    r = json.loads(run("--model", "deepseek-r1", "--hardware", "h800", "--gpus", "16",
                       "--precision", "fp8", "--context", "8192", "--gpu-hour", "2.0",
                       "--price-list", "deepseek-r1-2025-02", "--json"))
    assert r["kv_bytes_per_token"] == 70_272
    assert r["weights_bytes"] == 671e9
    assert r["fits"] is True and r["max_concurrent_sequences"] == 835
    assert r["prefill_tokens_per_s"] > 0
    assert r["price_list"]["unit_prices"]["output"] == "2.19"
    t = r["throughput"]
    assert t["basis"] == "calibrated on published measurements" and t["engine"] == "vllm"
    for key in ("decode_tokens_per_s", "prefill_tokens_per_s", "single_sequence_tokens_per_s"):
        assert 0 < t[key]["low"] < t[key]["value"] < t[key]["high"] <= t["bound"][key]
    # the default batch keeps every user at 10 tok/s or more, not the most that fit
    assert t["decode_tokens_per_s_per_sequence"]["value"] >= 10 and r["decode_batch"] < 835
    margins = r["price_list"]["cost_profit_margin_range"]
    assert margins["low"] < r["price_list"]["cost_profit_margin_at_capacity"] < margins["high"]
    bound = json.loads(run("--model", "deepseek-r1", "--hardware", "h800", "--gpus", "16",
                           "--efficiency", "1.0", "--user-speed", "0", "--json"))
    assert bound["throughput"]["basis"] == "roofline bound" and bound["decode_batch"] == 835
    assert bound["decode_tokens_per_s"] > 14_800 * 2      # the bound: above the published figure
    assert 0 < bound["usd_per_million_output_tokens"] < 2.19


def test_plan_json_when_it_does_not_fit() -> None:
    r = json.loads(run("-m", "deepseek-r1", "--hardware", "h800", "-n", "8", "--json"))
    assert r["fits"] is False and r["min_nodes_to_fit"] == 2


def test_deepseek_day_json() -> None:
    d = json.loads(run("deepseek-day", "--json"))
    assert d["cost_usd"] == 87_072
    assert d["revenue_usd"] == pytest.approx(562_027, abs=0.01)
    assert round(d["cost_profit_margin"], 2) == 5.45
    assert d["cost_profit_margin_percent"] == 545


def test_readable_reports() -> None:
    text = run("--model", "deepseek-r1", "--hardware", "h800", "--gpus", "16",
               "--price-list", "deepseek-r1-2025-02")
    assert "70,272 B" in text and "835" in text and "cost-profit margin" in text
    assert "$87,072" in run("deepseek-day")
    assert "DeepSeek production decode" in run("calibration", "--json")
    assert "deepseek-v2-lite" in run("models") and "ascend-910b" in run("hardware")


def test_listings_json() -> None:
    models = json.loads(run("models", "--json"))
    assert {m["id"] for m in models} >= {"deepseek-r1", "qwen2.5-72b"}
    assert all(m["source"] for m in models)
    hw = json.loads(run("hardware", "--json"))
    assert {h["id"] for h in hw} >= {"h800", "h100", "h200", "h20", "a800", "a100", "rtx4090",
                                     "ascend-910b"}
    cal = json.loads(run("calibration", "--json"))
    assert all(row["ratio"] >= 1 for row in cal)


def test_build_vs_buy_json(tmp_path: Path) -> None:
    csv = tmp_path / "traffic.csv"
    csv.write_text("hour,input_tokens,output_tokens\n"
                   + "".join(f"{h},{(20 if 9 <= h < 18 else 1) * 10**8},"
                             f"{(20 if 9 <= h < 18 else 1) * 25 * 10**6}\n" for h in range(24)))
    b = json.loads(run("build-vs-buy", "--traffic", str(csv), "--model", "deepseek-r1",
                       "--hardware", "h800", "--gpus", "16", "--efficiency", "0.2",
                       "--percentile", "50", "--percentile", "90", "--json"))
    assert [o["name"] for o in b["options"]] == ["cloud", "self-host-peak", "hybrid-p50",
                                                 "hybrid-p90"]
    assert b["price_list"] == "deepseek-r1-2025-02" and b["hours"] == 24
    assert "cheapest" in run("build-vs-buy", "--traffic", str(csv), "-m", "deepseek-r1",
                             "--hardware", "h800", "-n", "16")


def test_errors_exit_2_with_a_message() -> None:
    res = runner.invoke(plan_app, ["--model", "gpt-9", "--hardware", "h800"])
    assert res.exit_code == 2 and "unknown model 'gpt-9'" in res.output
    res = runner.invoke(plan_app, ["--model", "deepseek-r1"])
    assert res.exit_code == 2 and "--hardware" in res.output
    res = runner.invoke(plan_app, ["--model", "deepseek-r1", "--hardware", "h800",
                                   "--price-list", "nope"])
    assert res.exit_code == 2 and "no price list 'nope'" in res.output
    assert runner.invoke(plan_app, []).exit_code == 0      # help


def test_plot_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "plan.png"
    run("--model", "deepseek-r1", "--hardware", "h800", "--gpus", "16", "--plot", str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_mounts_under_a_parent_app() -> None:
    parent = typer.Typer()

    @parent.callback()
    def _root() -> None:
        """parent"""

    parent.add_typer(plan_app, name="plan")
    res = runner.invoke(parent, ["plan", "deepseek-day", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["cost_usd"] == 87_072
    res = runner.invoke(parent, ["plan", "--model", "deepseek-v3", "--hardware", "h200",
                                 "--gpus", "8", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["fits"] is True


# a file of the source tree or of the project around it, which an installed manxue does not have
_UNSHIPPED = re.compile(r"docs/|\.\./|shared/|\.md\b|shared facts|collected facts")


def _texts(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _texts(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _texts(v)


def test_plan_cites_no_file_that_does_not_ship() -> None:
    """GET /v1/plan (and the CLI's JSON) names its sources in words, not as repository paths."""
    from manxue.errors import ManxueError
    from manxue.plan.catalog import builtin_catalog
    from manxue.plan.report import jsonable
    from manxue.server.routes.plan import plan_report

    cat = builtin_catalog()
    queries = ([{"model": m, "hardware": "h800"} for m in cat.models]
               + [{"model": "deepseek-r1", "hardware": h} for h in cat.hardware])
    reports = []
    for q in queries:
        try:
            reports.append(jsonable(plan_report({**q, "price_list": "deepseek-r1-2025-02"})))
        except ManxueError:  # a model without a published KV layout needs kv_bytes_per_token
            reports.append(jsonable(plan_report({**q, "kv_bytes_per_token": "70000"})))
    assert {r["model"]["id"] for r in reports} == set(cat.models)
    assert {r["hardware"]["id"] for r in reports} == set(cat.hardware)
    outputs = [reports] + [json.loads(run(*cmd, "--json")) for cmd in
                           (["models"], ["hardware"], ["calibration"], ["deepseek-day"])]
    cited = [t for t in _texts(outputs) if _UNSHIPPED.search(t)]
    assert cited == []
    assert any("config.json" in r["model"]["source"] for r in reports)  # sources are still named
